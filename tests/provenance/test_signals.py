"""C2PA Asset Rubrics 1.0 signals, expected values written from the rubric's definitions (not from our output)."""

import io

import pytest
import yaml

from generation.permissions import training_permission
from provenance import disclose_image, verify_image, verify_path
from provenance.registry import InMemoryRegistry
from provenance.signals import (
    GENAI_SOURCE_TYPES,
    INCEPTION_SIGNALS,
    NON_EDITORIAL_ACTIONS,
    POSSIBLY_GENAI_SOURCE_TYPES,
    SIGNAL_TEXT,
    TRANSFORMATION_SIGNALS,
    manifest_signals,
)
from tests.conftest import SHARED_DATA, encode, face_image, signed_capture

RUBRIC = SHARED_DATA / "c2pa-asset-rubrics" / "asset-rubric-signals-local.yml"
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
LEGACY = ([], ["ambiguousActions"])  # (inception, transformation)

# The conformance files (2022-2023) record their actions as `c2pa.actions` (v1) and their ingredients as
# `c2pa.ingredient` (v1), or no actions at all. The rubric reads `c2pa.actions.v2` and `c2pa.ingredient.v3`
# only: no inception signal, and an empty actions list is ambiguous. This holds for every manifest in each file.
CONFORMANCE_SIGNALS = {
    "adobe-20220124-A.jpg": None,  # no manifest: no signal at all
    "adobe-20220124-I.jpg": None,
    **{
        name: LEGACY
        for name in (
            "adobe-20220124-C.jpg",
            "adobe-20220124-CA.jpg",
            "adobe-20220124-CACA.jpg",
            "adobe-20220124-CACAICAICICA.jpg",
            "adobe-20220124-CAI.jpg",
            "adobe-20220124-CAIAIIICAICIICAIICICA.jpg",
            "adobe-20220124-CAICA.jpg",
            "adobe-20220124-CAICAI.jpg",
            "adobe-20220124-CI.jpg",
            "adobe-20220124-CICA.jpg",
            "adobe-20220124-CICACACA.jpg",
            "adobe-20220124-CIE-sig-CA.jpg",
            "adobe-20220124-CII.jpg",
            "adobe-20220124-E-clm-CAICAI.jpg",
            "adobe-20220124-E-dat-CA.jpg",
            "adobe-20220124-E-sig-CA.jpg",
            "adobe-20220124-E-uri-CA.jpg",
            "adobe-20220124-E-uri-CIE-sig-CA.jpg",
            "adobe-20220124-XCA.jpg",
            "adobe-20220124-XCI.jpg",
            "nikon-20221019-building.jpeg",  # a camera, but without c2pa.actions.v2 the rubric sees no capture
            "truepic-20230212-camera.jpg",
            "truepic-20230212-landscape.jpg",
            "truepic-20230212-library.jpg",
        )
    },
}


def _signals(verdict) -> list[tuple[list[str], list[str]]]:
    return [(item.inception, item.transformation) for item in verdict.signals]


def test_constants_are_the_rubrics():
    info, statements = list(yaml.safe_load_all(RUBRIC.read_text()))
    variables = info["variables"]
    assert tuple(variables["$non_editorial_actions"]) == NON_EDITORIAL_ACTIONS
    assert tuple(variables["$genai_dst_types"]) == GENAI_SOURCE_TYPES
    assert tuple(variables["$possibly_genai_dst_types"]) == POSSIBLY_GENAI_SOURCE_TYPES
    ids = {statement["id"] for statement in statements}
    ours = {f"inception:signal_{n}" for n in INCEPTION_SIGNALS} | {
        f"transformation:signal_{n}" for n in TRANSFORMATION_SIGNALS
    }
    assert ids == ours
    for statement in statements:
        assert SIGNAL_TEXT[statement["id"].split("signal_")[1]] == statement["reportText"]["true"]["en"]


def test_conformance_files(conformance, store):
    directory, expected = conformance
    assert set(CONFORMANCE_SIGNALS) == {case["file"] for case in expected}
    for name, signals in CONFORMANCE_SIGNALS.items():
        verdict = verify_path(directory / name, store.trust_anchors())
        if signals is None:
            assert verdict.signals == [], name
        else:
            assert verdict.signals, name
            assert all(item == signals for item in _signals(verdict)), name


def test_our_disclosures(store, headshot_jpeg):
    # c2pa.created with trainedAlgorithmicMedia: fully GenAI; reference photos are inputTo ingredients without
    # Content Credentials: media of unknown provenance; c2pa.watermarked is non-editorial; the list is complete.
    disclosure = disclose_image(
        headshot_jpeg, store.signing_identity(), InMemoryRegistry(), reference_hashes=["ab" * 32]
    )
    verdict = verify_image(disclosure.data, store.trust_anchors())
    assert _signals(verdict) == [(["fullyGenAIMedia", "mediaUnknownProvenance"], ["nonEditorial"])]
    assert verdict.signals[0].manifest == disclosure.manifest_label

    small = disclose_image(encode(face_image(size=64), "PNG"), store.signing_identity(), InMemoryRegistry())
    assert not small.watermarked  # too small to carry the mark: no c2pa.watermarked action
    assert _signals(verify_image(small.data, store.trust_anchors())) == [(["fullyGenAIMedia"], [])]


def test_real_generators(store):
    google = verify_path(SHARED_DATA / "real-ai-c2pa" / "google-portrait.png", store.trust_anchors())
    # one manifest: c2pa.created + trainedAlgorithmicMedia, allActionsIncluded absent
    assert _signals(google) == [(["fullyGenAIMedia"], ["ambiguousActions"])]
    openai = verify_path(SHARED_DATA / "real-ai-c2pa" / "openai-chatgpt.png", store.trust_anchors())
    # active: c2pa.opened of a parent that has a manifest; parent: created by GPT-4o, then c2pa.converted
    assert _signals(openai) == [([], ["ambiguousActions"]), (["fullyGenAIMedia"], ["ambiguousActions", "nonEditorial"])]
    assert openai.signals[1].asserted_by == "OpenAI, Truepic Lens CLI in Sora"


def test_a_camera_capture_signed_here(store, headshot_jpeg):
    verdict = verify_image(signed_capture(store, headshot_jpeg), store.trust_anchors())
    assert _signals(verdict) == [(["capturedMedia"], ["ambiguousActions"])]


def _sign(store, actions: list[dict]) -> bytes:
    import c2pa

    data = {"actions": actions, "allActionsIncluded": True}
    manifest = {
        "claim_generator_info": [{"name": "test editor"}],
        "assertions": [{"label": "c2pa.actions.v2", "data": data}],
    }
    signed = io.BytesIO()
    source = io.BytesIO(encode(face_image(size=128), "JPEG"))
    context = c2pa.Context(c2pa.Settings.from_dict({"builder": {"created_assertion_labels": ["c2pa.actions"]}}))
    c2pa.Builder(manifest, context=context).sign(store.signing_identity().c2pa_signer(), "image/jpeg", source, signed)
    return signed.getvalue()


@pytest.mark.parametrize(
    ("actions", "inception", "transformation"),
    [
        (
            [{"action": "c2pa.created", "digitalSourceType": IPTC + "compositeWithTrainedAlgorithmicMedia"}],
            ["partlyGenAICreation"],
            [],
        ),
        (
            [
                {"action": "c2pa.created", "digitalSourceType": IPTC + "digitalCreation"},
                {"action": "c2pa.edited", "digitalSourceType": IPTC + "trainedAlgorithmicMedia"},
            ],
            ["nonGenAIDigitalCreation"],
            ["perceptibleGenAI"],
        ),
        (
            [
                {"action": "c2pa.created", "digitalSourceType": "http://c2pa.org/digitalsourcetype/empty"},
                {"action": "c2pa.color_adjustments", "digitalSourceType": IPTC + "digitalArt"},
            ],
            ["blankCanvas"],
            ["perceptibleNonGenAI", "perceptiblePossiblyGenAI"],
        ),
        (
            [
                {"action": "c2pa.created", "digitalSourceType": IPTC + "screenCapture"},
                {"action": "com.example.sharpen"},
                {"action": "c2pa.resized.proportional"},
            ],
            ["screenCaptureMayContainGenAI"],
            ["ambiguousActions", "nonEditorial"],
        ),
    ],
)
def test_signed_edits(store, actions, inception, transformation):
    verdict = verify_image(_sign(store, actions), store.trust_anchors())
    assert _signals(verdict) == [(inception, transformation)]


def test_incomplete_or_gathered_actions_are_ambiguous():
    created = {"action": "c2pa.created", "digitalSourceType": IPTC + "digitalCapture"}
    complete = {"c2pa.actions.v2": {"actions": [created], "allActionsIncluded": True}}
    assert manifest_signals({"manifests": [{"label": "m", "assertions": complete}]})[0].transformation == []
    gathered = {"gathered_assertions": [{"url": "self#jumbf=c2pa.assertions/c2pa.actions.v2__1"}]}
    store = {"manifests": [{"label": "m", "assertions": complete, "claim.v2": gathered}]}
    assert manifest_signals(store)[0].transformation == ["ambiguousActions"]
    unknown = {"c2pa.actions.v2": {"actions": [{"action": "c2pa.unknown"}], "allActionsIncluded": True}}
    assert manifest_signals({"manifests": [{"label": "m", "assertions": unknown}]})[0].transformation == [
        "ambiguousActions"
    ]


def test_cawg_training_mining_is_read_and_refused(store):
    forbid = {"label": "cawg.training-mining", "data": {"entries": {"cawg.ai_training": {"use": "notAllowed"}}}}
    photo = signed_capture(store, encode(face_image(size=256), "JPEG"), forbid)
    verdict = verify_image(photo, store.trust_anchors())
    assert verdict.c2pa.training_mining == {
        "entries": {"cawg.ai_training": {"use": "notAllowed"}},
        "assertions": ["cawg.training-mining"],
    }
    permission = training_permission(verdict.c2pa)
    assert not permission.allowed and "cawg.ai_training" in permission.reason

    # Both assertions: the stricter entry wins, whichever label carries it.
    allow = {"label": "c2pa.training-mining", "data": {"entries": {"cawg.ai_training": {"use": "allowed"}}}}
    both = signed_capture(store, encode(face_image(size=256), "JPEG"), allow, forbid)
    assert not training_permission(verify_image(both, store.trust_anchors()).c2pa).allowed
