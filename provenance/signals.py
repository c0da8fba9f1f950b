"""C2PA Asset Rubrics 1.0 signals: what each manifest says about how its asset began and was changed.

The signals rubric (`asset-rubric-signals-local.yml`, C2PA Conformance Task Force, 2026-08-06, CC BY 4.0)
evaluates each manifest of a crJSON manifest store locally, with json-formula expressions. Each function
below is one of those expressions written in Python, over the same crJSON that c2pa's `Reader.crjson()` gives;
the constants are the rubric's variables. Where an expression reads a value that is absent, json-formula
yields null: a list that is absent counts as empty, so a manifest without a `c2pa.actions.v2` assertion (the
older `c2pa.actions` form is not read by the rubric) has no action-based signal except `ambiguousActions`,
which the rubric raises for an empty actions list.
"""

from collections.abc import Callable

from pydantic import BaseModel, Field

INCEPTION_ACTIONS = ("c2pa.created", "c2pa.opened")
NON_EDITORIAL_ACTIONS = (
    "c2pa.converted",
    "c2pa.published",
    "c2pa.repackaged",
    "c2pa.transcoded",
    "c2pa.resized.proportional",
    "c2pa.enhanced",
    "c2pa.edited.metadata",
    "c2pa.watermarked",
    "c2pa.watermarked.bound",
    "c2pa.watermarked.unbound",
    "c2pa.redacted",
)
_IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
GENAI_SOURCE_TYPES = (
    _IPTC + "trainedAlgorithmicMedia",
    _IPTC + "compositeWithTrainedAlgorithmicMedia",
    _IPTC + "compositeSynthetic",
    "http://c2pa.org/digitalsourcetype/trainedAlgorithmicData",
)
POSSIBLY_GENAI_SOURCE_TYPES = (_IPTC + "digitalArt", _IPTC + "composite")

# The source types whose c2pa.created/c2pa.opened action raises each inception signal.
INCEPTION_SOURCE_TYPES: dict[str, tuple[str, ...]] = {
    "blankCanvas": ("http://c2pa.org/digitalsourcetype/empty",),
    "capturedMedia": (_IPTC + "digitalCapture", _IPTC + "computationalCapture"),
    "capturedMediaStitched": (_IPTC + "compositeCapture",),
    "compositionMayContainGenAI": (_IPTC + "composite",),
    "fullyGenAIMedia": (_IPTC + "trainedAlgorithmicMedia",),
    "nonGenAIDigitalCreation": (_IPTC + "digitalCreation",),
    "partlyGenAICreation": (_IPTC + "compositeWithTrainedAlgorithmicMedia",),
    "screenCaptureMayContainGenAI": (_IPTC + "screenCapture",),
}
# The rubric's report text for a triggered signal.
SIGNAL_TEXT: dict[str, str] = {
    "blankCanvas": "Contains Blank Canvas",
    "capturedMedia": "Contains Captured Media",
    "capturedMediaStitched": "Contains Stitched Captured Media",
    "compositionMayContainGenAI": "Contains Composition which may contain GenAI content",
    "fullyGenAIMedia": "Contains Fully GenAI Media",
    "mediaUnknownProvenance": "Contains Media of Unknown Provenance",
    "nonGenAIDigitalCreation": "Contains Non-GenAI digital creation",
    "partlyGenAICreation": "Contains Partly GenAI Creation",
    "screenCaptureMayContainGenAI": "Contains Screen Capture Which May Contain GenAI Content",
    "ambiguousActions": "Contains ambiguous actions",
    "nonEditorial": "Contains Non-editorial Transformations",
    "perceptibleGenAI": "Contains Perceptible GenAI Transformations",
    "perceptibleNonGenAI": "Contains Perceptible Non-GenAI Transformations",
    "perceptiblePossiblyGenAI": "Contains Perceptible Transformations Possibly Using GenAI",
}


class ManifestSignals(BaseModel):
    manifest: str = Field(description="The manifest's label.")
    asserted_by: str | None = Field(None, description="Organisation and common name of its signing certificate.")
    inception: list[str] = Field(default_factory=list, description="Inception signals, e.g. fullyGenAIMedia.")
    transformation: list[str] = Field(default_factory=list, description="Transformation signals, e.g. nonEditorial.")


def manifest_signals(crjson: dict) -> list[ManifestSignals]:
    """The signals of every manifest in a crJSON manifest store, in its order (the active manifest first)."""
    results = []
    for manifest in crjson.get("manifests") or []:
        if not isinstance(manifest, dict):
            continue
        results.append(
            ManifestSignals(
                manifest=str(manifest.get("label") or ""),
                asserted_by=_asserted_by(manifest),
                inception=[name for name, test in INCEPTION_SIGNALS.items() if test(manifest)],
                transformation=[name for name, test in TRANSFORMATION_SIGNALS.items() if test(manifest)],
            )
        )
    return results


def _actions_assertion(manifest: dict) -> dict:
    """`_manifest_actionsV2Assertion`: assertions.'c2pa.actions.v2'."""
    assertion = (manifest.get("assertions") or {}).get("c2pa.actions.v2")
    return assertion if isinstance(assertion, dict) else {}


def _signal_actions(manifest: dict) -> list[dict]:
    """`_manifest_signalActions`: assertions.'c2pa.actions.v2'.actions (absent: empty)."""
    actions = _actions_assertion(manifest).get("actions")
    return [action for action in actions if isinstance(action, dict)] if isinstance(actions, list) else []


def _created_with(source_types: tuple[str, ...]) -> Callable[[dict], bool]:
    """`_manifest_createdWithDst`: a c2pa.created or c2pa.opened action with one of these digitalSourceTypes."""

    def test(manifest: dict) -> bool:
        return any(
            action.get("action") in INCEPTION_ACTIONS and action.get("digitalSourceType") in source_types
            for action in _signal_actions(manifest)
        )

    return test


def _media_unknown_provenance(manifest: dict) -> bool:
    """assertions.'c2pa.ingredient.v3' != null && assertions.'c2pa.ingredient.v3'.activeManifest == null"""
    ingredient = (manifest.get("assertions") or {}).get("c2pa.ingredient.v3")
    return ingredient is not None and (not isinstance(ingredient, dict) or ingredient.get("activeManifest") is None)


def _ambiguous_actions(manifest: dict) -> bool:
    actions = _signal_actions(manifest)
    gathered = ((manifest.get("claim.v2") or {}).get("gathered_assertions")) or []
    return (
        len(actions) == 0
        or _actions_assertion(manifest).get("allActionsIncluded") is not True
        or any(isinstance(a.get("action"), str) and not a["action"].startswith("c2pa.") for a in actions)
        or any(a.get("action") == "c2pa.unknown" for a in actions)
        or any(isinstance(item, dict) and "c2pa.actions" in str(item.get("url") or "") for item in gathered)
    )


def _perceptible(manifest: dict) -> list[dict]:
    """Actions that are neither inception nor non-editorial."""
    return [
        action
        for action in _signal_actions(manifest)
        if action.get("action") is not None
        and action.get("action") not in INCEPTION_ACTIONS
        and action.get("action") not in NON_EDITORIAL_ACTIONS
    ]


INCEPTION_SIGNALS: dict[str, Callable[[dict], bool]] = {
    **{name: _created_with(types) for name, types in INCEPTION_SOURCE_TYPES.items()},
    "mediaUnknownProvenance": _media_unknown_provenance,
}
INCEPTION_SIGNALS = dict(sorted(INCEPTION_SIGNALS.items()))
TRANSFORMATION_SIGNALS: dict[str, Callable[[dict], bool]] = {
    "ambiguousActions": _ambiguous_actions,
    "nonEditorial": lambda m: any(a.get("action") in NON_EDITORIAL_ACTIONS for a in _signal_actions(m)),
    "perceptibleGenAI": lambda m: any(a.get("digitalSourceType") in GENAI_SOURCE_TYPES for a in _perceptible(m)),
    "perceptibleNonGenAI": lambda m: any(
        a.get("digitalSourceType") is not None and a.get("digitalSourceType") not in GENAI_SOURCE_TYPES
        for a in _perceptible(m)
    ),
    "perceptiblePossiblyGenAI": lambda m: any(
        a.get("digitalSourceType") in POSSIBLY_GENAI_SOURCE_TYPES for a in _perceptible(m)
    ),
}


def _asserted_by(manifest: dict) -> str | None:
    subject = ((manifest.get("signature") or {}).get("certificateInfo") or {}).get("subject") or {}
    parts = [subject.get("O"), subject.get("CN")]
    return ", ".join(str(part) for part in parts if part) or None
