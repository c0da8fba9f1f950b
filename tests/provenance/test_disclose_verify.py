import hashlib
import io
import json

import c2pa
import pytest
from PIL import Image, PngImagePlugin

from provenance import (
    ImageInputError,
    ImageLimits,
    disclose_image,
    parse_model_hashes,
    verify_image,
    verify_path,
)
from provenance.disclose import TRAINED_ALGORITHMIC_MEDIA
from tests.conftest import encode, face_image, signed_capture

REFERENCES = ["img2.jpg", "img3.jpg", "img4.jpg"]


@pytest.fixture(scope="module")
def references(faces) -> list[bytes]:
    return [(faces / name).read_bytes() for name in REFERENCES]


@pytest.fixture(scope="module")
def disclosed_jpeg(store, registry, headshot_jpeg, references):
    return disclose_image(
        headshot_jpeg,
        store.signing_identity(),
        registry,
        reference_hashes=[hashlib.sha256(r).hexdigest() for r in references],
        generator="Stable Diffusion XL 1.0",
        model_hashes={"sdxl-base": "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b"},
    )


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
def test_round_trip_is_ai_verified(store, registry, references, image_format):
    source = encode(face_image(size=512), image_format)
    hashes = [hashlib.sha256(r).hexdigest() for r in references]
    disclosure = disclose_image(source, store.signing_identity(), registry, reference_hashes=hashes, generator="SDXL")
    assert disclosure.mime_type == f"image/{image_format.lower()}"

    verdict = verify_image(disclosure.data, store.trust_anchors(), name="out")
    assert verdict.label == "ai_verified"
    assert verdict.ai_generated is True
    assert verdict.c2pa.state == "trusted"
    assert verdict.c2pa.failure_codes == []
    assert verdict.c2pa.digital_source_type == TRAINED_ALGORITHMIC_MEDIA
    assert verdict.c2pa.signer.subject == "headshot disclosure signer"
    assert verdict.c2pa.claim_generator.startswith("headshot ")
    assert verdict.c2pa.manifest_label == disclosure.manifest_label
    # the XMP declaration is there for readers without C2PA
    assert verdict.metadata["xmp"]["DigitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert {(e.source, e.strength) for e in verdict.evidence} >= {("c2pa", "strong"), ("xmp", "strong")}


def test_manifest_content(disclosed_jpeg, references, store):
    manifest = disclosed_jpeg.manifest
    actions = next(a for a in manifest["assertions"] if a["label"] == "c2pa.actions.v2")["data"]["actions"]
    created = actions[0]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert "headshot" in created["softwareAgent"]["name"]
    assert "Stable Diffusion XL 1.0" in created["softwareAgent"]["name"]
    assert created["parameters"]["model_hashes"]["sdxl-base"].startswith("31e35c80")

    verdict = verify_image(disclosed_jpeg.data, store.trust_anchors())
    assert verdict.c2pa.training_mining["entries"]["c2pa.ai_training"]["use"] == "notAllowed"
    assert verdict.c2pa.training_mining["entries"]["c2pa.data_mining"]["use"] == "notAllowed"
    assert verdict.metadata["xmp"]["DataMining"].endswith("DMI-PROHIBITED")


def test_reference_photos_are_hashes_only(disclosed_jpeg, references, store):
    verdict = verify_image(disclosed_jpeg.data, store.trust_anchors())
    ingredients = verdict.c2pa.ingredients
    assert [i["title"] for i in ingredients] == [
        "reference photo 1",
        "reference photo 2",
        "reference photo 3",
    ]
    assert [i["relationship"] for i in ingredients] == ["inputTo"] * 3
    assert [i["sha256"] for i in ingredients] == [hashlib.sha256(r).hexdigest() for r in references]

    store_json = c2pa.Reader("image/jpeg", io.BytesIO(disclosed_jpeg.data)).json()
    assert "thumbnail" not in store_json  # neither the output's nor, above all, the references' pixels
    for name in REFERENCES:
        assert name not in store_json


def test_size_overhead_under_30_kb(disclosed_jpeg, headshot_jpeg):
    assert Image.open(io.BytesIO(headshot_jpeg)).size == (1024, 1024)
    assert 0 < disclosed_jpeg.overhead_bytes < 30_000  # XMP + manifest
    # re-encoding the watermarked pixels with the input's own quantisation tables keeps the size too
    assert abs(len(disclosed_jpeg.data) - len(headshot_jpeg)) < 30_000


def test_independent_reader_accepts_output(disclosed_jpeg, tmp_path):
    from encypher_c2pa import verify

    path = tmp_path / "disclosed.jpg"
    path.write_bytes(disclosed_jpeg.data)
    report = verify(str(path))
    assert report["present"] is True
    assert report["integrity"] == "valid"
    assert report["signature"] == "valid"
    assert report["hard_binding"] == "match"


def test_pixels_changed_after_signing(disclosed_jpeg, store, registry):
    data = bytearray(disclosed_jpeg.data)
    table = data.index(b"\xff\xdb") + 5  # first quantisation table: the decoded pixels change, the file stays valid
    data[table + 10] = data[table + 10] % 200 + 1 if data[table + 10] != 1 else 2
    tampered = bytes(data)

    verdict = verify_image(tampered, store.trust_anchors())  # no registry to consult
    assert verdict.label == "invalid_credentials"
    assert verdict.ai_generated is None
    assert verdict.c2pa.state == "invalid"
    assert "assertion.dataHash.mismatch" in verdict.c2pa.failure_codes
    assert "assertion.dataHash.mismatch" in verdict.summary

    # our own output, tampered: the watermark still says what it is, the credentials stay invalid
    verdict = verify_image(tampered, store.trust_anchors(), registry=registry)
    assert verdict.label == "ai_soft_binding"
    assert verdict.ai_generated is True
    assert verdict.c2pa.state == "invalid"
    assert "assertion.dataHash.mismatch" in verdict.c2pa.failure_codes
    assert verdict.recovered_manifest["label"] == disclosed_jpeg.manifest_label


def test_untrusted_signer(foreign_store, store, registry, headshot_jpeg):
    disclosure = disclose_image(headshot_jpeg, foreign_store.signing_identity(), registry)
    verdict = verify_image(disclosure.data, store.trust_anchors())
    assert verdict.label == "ai_unverified_signer"
    assert verdict.ai_generated is True
    assert verdict.c2pa.state == "valid-untrusted"
    assert verdict.c2pa.signer.subject == "Elsewhere Signer"
    assert "Elsewhere Inc" in verdict.c2pa.signer.issuer
    # the same file is trusted where the foreign root is an anchor
    assert verify_image(disclosure.data, foreign_store.trust_anchors()).label == "ai_verified"


def test_trusted_capture_manifest(store):
    signed = signed_capture(store, encode(face_image("img5.jpg", 256), "JPEG"))
    verdict = verify_image(signed, store.trust_anchors())
    assert verdict.label == "capture_verified"
    assert verdict.ai_generated is False
    assert verdict.c2pa.claim_generator == "test camera 1.0"


def test_xmp_only_declaration_is_ai_metadata(store):
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">'
        "<Iptc4xmpExt:DigitalSourceType>"
        "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
        "</Iptc4xmpExt:DigitalSourceType></rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    data = encode(face_image("img6.jpg", 256), "JPEG", xmp=xmp.encode())
    verdict = verify_image(data, store.trust_anchors())
    assert verdict.label == "ai_metadata"
    assert verdict.ai_generated is True
    assert verdict.c2pa.state == "none"
    assert [(e.source, e.strength) for e in verdict.evidence] == [("xmp", "strong")]
    assert "compositeWithTrainedAlgorithmicMedia" in verdict.evidence[0].detail


def test_stable_diffusion_parameters_chunk_is_ai_metadata(store):
    info = PngImagePlugin.PngInfo()
    info.add_text(
        "parameters",
        "corporate headshot of a woman, studio lighting\nNegative prompt: blurry\n"
        "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 1024x1024, "
        "Model hash: 31e35c80fc, Model: sd_xl_base_1.0",
    )
    data = encode(face_image("img7.jpg", 256), "PNG", pnginfo=info)
    verdict = verify_image(data, store.trust_anchors())
    assert verdict.label == "ai_metadata"
    assert verdict.metadata["png_text"]["parameters"].startswith("corporate headshot")
    assert ("png-text", "strong") in {(e.source, e.strength) for e in verdict.evidence}


def test_generator_named_in_exif_is_weak_ai_metadata(store):
    image = face_image("img8.jpg", 256)
    exif = image.getexif()
    exif[0x0131] = "Midjourney v6"
    verdict = verify_image(encode(image, "JPEG", exif=exif), store.trust_anchors())
    assert verdict.label == "ai_metadata"
    assert [(e.source, e.strength) for e in verdict.evidence] == [("exif", "weak")]


def test_plain_photo_has_no_provenance(store, faces):
    verdict = verify_path(faces / "img47.jpg", store.trust_anchors())  # a WebP file named .jpg
    assert verdict.label == "no_provenance"
    assert verdict.ai_generated is None
    assert "does not mean the photo is real" in verdict.summary


def test_model_hash_pairs():
    assert parse_model_hashes(["sdxl=ABCDEF0123", "lora = 00112233"]) == {
        "sdxl": "abcdef0123",
        "lora": "00112233",
    }
    for bad in ["sdxl", "=abcdef0123", "sdxl=not-hex!", "sdxl=abc"]:
        with pytest.raises(ValueError, match="NAME=HEX"):
            parse_model_hashes([bad])


BAD_INPUTS = {
    "empty": (b"", "empty"),
    "text": (b"hello, this is not an image at all" * 3, "not a JPEG, PNG or WebP"),
    "gif": (encode(Image.new("RGB", (8, 8)), "GIF"), "GIF file"),
    "truncated": (None, "corrupt or truncated"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_give_clear_errors(case, store, registry, headshot_jpeg):
    data, message = BAD_INPUTS[case]
    if data is None:
        data = headshot_jpeg[: len(headshot_jpeg) // 2]
    with pytest.raises(ImageInputError, match=message):
        verify_image(data, store.trust_anchors())
    with pytest.raises(ImageInputError, match=message):
        disclose_image(data, store.signing_identity(), registry)


def test_limits(store, registry, headshot_jpeg):
    with pytest.raises(ImageInputError, match="over the limit of 1,000 bytes") as too_big:
        verify_image(headshot_jpeg, store.trust_anchors(), ImageLimits(max_bytes=1000))
    assert too_big.value.kind == "too_large"
    with pytest.raises(ImageInputError, match=r"1024x1024 = 1,048,576 pixels, over the limit"):
        disclose_image(headshot_jpeg, store.signing_identity(), registry, limits=ImageLimits(max_pixels=1_000_000))


def test_unreadable_paths(store, tmp_path):
    results = [verify_path(path, store.trust_anchors()) for path in (tmp_path / "missing.jpg", tmp_path)]
    assert [result.error for result in results] == [
        "no such file; check the path",
        "this is a directory, not an image file",
    ]
    assert json.loads(results[0].model_dump_json()) == {
        "file": str(tmp_path / "missing.jpg"),
        "error": results[0].error,
    }
