"""The typed API: every /v1 operation documents the body it answers with (service/schemas.py)."""

import dataclasses
import json

import pytest

from scoring.checks import CheckResult
from scoring.likeness import LikenessScore
from service.app import create_app
from service.schemas import CheckOut, HeadshotOut, LikenessOut, SubjectOut
from service.settings import Settings
from service.tables import Headshot

JSON = "application/json"
FILE_TYPES = {"image/png", "image/jpeg", "image/webp", "text/html", "application/c2pa"}


@pytest.fixture(scope="module")
def openapi(tmp_path_factory) -> dict:
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("openapi") / "data")).openapi()


def _component(openapi: dict, reference: str) -> dict:
    return openapi["components"]["schemas"][reference.removeprefix("#/components/schemas/")]


def _undescribed(openapi: dict, schema: dict) -> list[str]:
    """What in `schema` is not a declared object: a free-form object ({} or `dict`), or a missing schema."""
    if "$ref" in schema:
        component = _component(openapi, schema["$ref"])
        return [] if component.get("properties") else [schema["$ref"]]
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return [problem for option in schema[combinator] for problem in _undescribed(openapi, option)]
    if schema.get("type") == "array":
        return _undescribed(openapi, schema.get("items", {}))
    return [str(schema) or "{}"]


def _operations(openapi: dict) -> list[tuple[str, str, dict]]:
    return [
        (method.upper(), path, operation)
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
    ]


def test_every_operation_documents_its_success_body(openapi):
    """Every /v1 operation (and /healthz, /.well-known/jwks.json): a declared JSON body, a file, or 204."""
    operations = _operations(openapi)
    assert len([path for _, path, _ in operations if path.startswith("/v1/")]) >= 23
    problems = []
    for method, path, operation in operations:
        successes = {code: response for code, response in operation["responses"].items() if code.startswith("2")}
        if not successes:
            problems.append(f"{method} {path}: no 2xx response")
        for code, response in successes.items():
            content = response.get("content", {})
            if code == "204":
                if content:
                    problems.append(f"{method} {path}: 204 documents a body")
            elif JSON in content and content[JSON].get("schema", {}).get("format") == "binary":
                continue  # a stored JSON file served as it is (a pack's report.json)
            elif JSON in content:
                problems += [f"{method} {path} {code}: {p}" for p in _undescribed(openapi, content[JSON]["schema"])]
            elif not set(content) & FILE_TYPES:
                problems.append(f"{method} {path} {code}: neither a JSON schema nor a file type ({sorted(content)})")
    assert problems == []


def test_the_walk_refuses_free_form_bodies(openapi):
    """What the routes answered before their models: `-> dict` or no annotation at all."""
    assert _undescribed(openapi, {"type": "object", "additionalProperties": True}) != []
    assert _undescribed(openapi, {}) != []
    assert _undescribed(openapi, {"$ref": "#/components/schemas/SubjectOut"}) == []


def test_response_models_are_exact():
    """A field a route returns but its model does not declare is an error, not silently dropped."""
    row = SubjectOut.model_json_schema()
    assert row["additionalProperties"] is False
    with pytest.raises(ValueError, match="extra"):
        SubjectOut.model_validate(
            {
                "id": "s",
                "tenant": "t",
                "display_name": "Ada",
                "consent": {
                    "given_by": "Ada",
                    "scope": ["training"],
                    "text_version": "v1",
                    "given_at": "2026-11-30T09:00:00+00:00",
                    "withdrawn_at": None,
                },
                "created_at": "2026-11-30T09:00:00+00:00",
                "undeclared": 1,
            }
        )


@pytest.mark.parametrize(("model", "dataclass"), [(LikenessOut, LikenessScore), (CheckOut, CheckResult)])
def test_headshot_report_models_follow_scoring(model, dataclass):
    """A headshot's likeness and checks are scoring's dataclasses as JSON: the models list the same fields."""
    assert list(model.model_fields) == [field.name for field in dataclasses.fields(dataclass)]


def test_a_headshot_body_keeps_the_numbers_scoring_wrote():
    """A check's count (0 faces) stays 0, not 0.0: the model passes the stored report through unchanged."""
    check = {"name": "one_face", "value": 0, "threshold": "exactly 1", "passed": False, "explanation": "No face."}
    likeness = {"distance": 0.31, "confidence": 0.9, "band": "same", "near_copy_of": None}
    report = {
        "score": 54.0,
        "rank": 1,
        "passed": False,
        "likeness": likeness,
        "checks": [check],
        "label": "ai_verified",
    }
    row = Headshot(
        id="h1",
        tenant="t",
        subject_id="s",
        job_id="j",
        storage_key="k",
        manifest_label="urn:c2pa:x",
        watermark_payload="00",
        style="corporate-grey",
        seed=7,
        report=json.dumps(report),
        kept=True,
    )
    body = json.loads(HeadshotOut.from_row(row).model_dump_json())
    assert body["checks"] == [check] and body["likeness"] == likeness and body["score"] == 54.0
    assert json.dumps(body["checks"][0]["value"]) == "0"
