"""Every check on the face's five landmarks passes on real photos and fires on the degradation it exists for.

The checks on mediapipe's landmarks have their own tests: test_eyes.py (reflections) and test_hands.py.
"""

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from scoring import checks
from scoring.faces import DlibBackend
from tests.conftest import FACES

BACKEND = DlibBackend()
SINGLE_FACE_PHOTOS = sorted(p.name for p in FACES.glob("img*.jpg"))


def _open(name: str) -> Image.Image:
    with Image.open(FACES / name) as image:
        return image.convert("RGB")


def _run_checks(image: Image.Image) -> dict[str, checks.CheckResult]:
    faces = BACKEND.detect(image)
    results = [checks.check_one_face(faces)]
    if faces:
        view = checks.face_view(image, faces[0])
        results += [
            checks.check_framing(image, faces[0]),
            checks.check_sharpness(view),
            checks.check_exposure(view),
            checks.check_geometry(view),
            checks.check_pose(faces[0]),
        ]
    return {result.name: result for result in results}


@pytest.fixture(scope="module")
def base() -> Image.Image:
    return _open("img1.jpg").resize((691, 934))


@pytest.mark.parametrize("name", SINGLE_FACE_PHOTOS)
def test_real_photos_pass_every_check(name):
    results = _run_checks(_open(name))
    assert len(results) == 6
    failed = {n: r.explanation for n, r in results.items() if not r.passed}
    assert failed == {}, name
    for result in results.values():
        assert result.explanation and result.threshold


def test_base_photo_passes(base):
    assert all(result.passed for result in _run_checks(base).values())


def test_blur_fires_sharpness(base):
    result = _run_checks(base.filter(ImageFilter.GaussianBlur(6)))["sharpness"]
    assert not result.passed
    assert result.value < checks.SHARPNESS_MIN
    assert "blurred" in result.explanation


def test_pasted_second_face_fires_one_face(base):
    other = _open("img20.jpg")
    face = BACKEND.detect(other)[0]
    left, top, right, bottom = (round(v) for v in face.box)
    pad = round(0.3 * face.width)
    patch = other.crop((left - pad, top - pad, right + pad, bottom + pad))
    collage = Image.new("RGB", (base.width * 2, base.height), "grey")
    collage.paste(base, (0, 0))
    collage.paste(patch.resize((base.width, round(base.width * patch.height / patch.width))), (base.width, 100))
    result = _run_checks(collage)["one_face"]
    assert not result.passed
    assert result.value == 2
    assert "2 faces" in result.explanation
    assert _run_checks(Image.new("RGB", (400, 400), "grey"))["one_face"].explanation == "No face was found."


def test_several_people_fire_one_face():
    assert _run_checks(_open("couple.jpg"))["one_face"].value == 2
    assert not _run_checks(_open("selfie-many-people.jpg"))["one_face"].passed


def test_face_cut_off_at_the_edge_fires_framing(base):
    face = BACKEND.detect(base)[0]
    cut = base.crop((0, round(face.box[1] + 0.3 * face.height), base.width, base.height))  # cut through the eyes
    result = _run_checks(cut)
    if "framing" in result:  # the detector may still find the lower half of the face
        assert not result["framing"].passed
        assert "cut off" in result["framing"].explanation
    else:
        assert not result["one_face"].passed
    tight = base.crop((0, round(face.box[1] - 0.05 * face.height), base.width, base.height))  # forehead cut
    framing = _run_checks(tight)["framing"]
    assert not framing.passed and "cut off" in framing.explanation


def test_over_exposure_fires_exposure(base):
    result = _run_checks(ImageEnhance.Brightness(base).enhance(2.2))["exposure"]
    assert not result.passed
    assert "blown out" in result.explanation


def test_stretched_face_fires_geometry(base):
    stretched = base.resize((base.width, round(base.height * 1.7)))
    result = _run_checks(stretched)["geometry"]
    assert not result.passed
    assert "nose" in result.explanation
    assert "5 landmarks" in result.explanation  # says what it could check


def test_geometry_with_68_landmarks(base):
    backend = DlibBackend(use_68_landmarks=True)
    face = backend.detect(base)[0]
    assert face.landmarks68.shape == (68, 2)
    result = checks.check_geometry(checks.face_view(base, face))
    assert result.passed and "5 landmarks" not in result.explanation


def test_turned_head_fires_pose(base):
    face = BACKEND.detect(base)[0]
    result = checks.check_pose(face)
    assert result.passed
    turned = checks.check_pose(
        type(face)(
            box=face.box,
            landmarks=face.landmarks + np.array([0, 0, 0, 0, 0.6]).reshape(5, 1) * [face.width, 0],
            score=face.score,
        )
    )
    assert not turned.passed and "Extreme head pose" in turned.explanation
    tilted = _run_checks(base.rotate(40, expand=True, fillcolor="grey"))
    assert not tilted["pose"].passed
