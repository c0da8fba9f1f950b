import re
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scoring.faces import DlibBackend, Face, FaceBackendError, embedding_distance
from tests.conftest import FACES

insightface = pytest.importorskip("insightface")  # optional: see scoring/insightface_backend.py

from scoring.insightface_backend import InsightFaceBackend, InsightFaceDetection  # noqa: E402
from scoring.tiny_insightface import (  # noqa: E402
    EMBEDDING_SIZE,
    FACE_CENTRE,
    FACE_HALF_SIDE,
    FACE_KEYPOINTS,
    build_detector,
    build_recogniser,
)

DETECTOR = "det_10g.onnx"
RECOGNISER = "w600k_r50.onnx"


class NetworkAttempt(AssertionError):
    """Raised when code under test tries to open a network connection."""


@pytest.fixture(scope="module", autouse=True)
def home(tmp_path_factory) -> Path:
    """No network, no FaceAnalysis and an empty home for this module, set up before any pack loads."""
    home = tmp_path_factory.mktemp("home")

    def refuse(*args, **kwargs):
        raise NetworkAttempt(f"network access attempted: {args} {kwargs}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        patch.setattr(socket, "getaddrinfo", refuse)
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(insightface.app.FaceAnalysis, "__init__", refuse)
        yield home


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Path:
    """The tiny detector and recogniser, built once; tests copy them into packs."""
    directory = tmp_path_factory.mktemp("tiny-models")
    build_detector(directory / DETECTOR)
    build_detector(directory / "no_keypoints.onnx", keypoints=False)
    build_recogniser(directory / RECOGNISER)
    return directory


@pytest.fixture(scope="module")
def pack(models, tmp_path_factory) -> Path:
    return make_pack(tmp_path_factory.mktemp("pack"), models, DETECTOR, RECOGNISER)


@pytest.fixture(scope="module")
def backend(pack) -> InsightFaceBackend:
    return InsightFaceBackend(pack)


@pytest.fixture(scope="session")
def img1() -> Image.Image:
    with Image.open(FACES / "img1.jpg") as image:
        return image.convert("RGB")


@pytest.fixture(scope="session")
def img2() -> Image.Image:
    with Image.open(FACES / "img2.jpg") as image:
        return image.convert("RGB")


def make_pack(directory: Path, models: Path, *names: str) -> Path:
    for name in names:
        (directory / name).write_bytes((models / name).read_bytes())
    return directory


def expected_box(image: Image.Image, detection_side: int) -> np.ndarray:
    """Where the tiny detector's face lands in image coordinates (portrait image, square detector input)."""
    scale = detection_side / image.height
    corners = np.array(FACE_CENTRE * 2) + np.array([-1, -1, 1, 1]) * FACE_HALF_SIDE
    return corners / scale


def test_tiny_models_route_like_insightface_packs(models):
    from insightface.model_zoo import get_model

    detector = get_model(str(models / DETECTOR), providers=["CPUExecutionProvider"])
    recogniser = get_model(str(models / RECOGNISER), providers=["CPUExecutionProvider"])

    assert type(detector).__name__ == "SCRFD" and detector.taskname == "detection"
    assert detector.use_kps and detector.fmc == 3 and detector._num_anchors == 2
    assert type(recogniser).__name__ == "ArcFaceONNX" and recogniser.taskname == "recognition"
    assert recogniser.input_size == (112, 112) and recogniser.output_shape[1] == EMBEDDING_SIZE


def test_backend_attributes(backend):
    assert backend.name == "insightface"
    assert backend.embedding_distance == "cosine"
    assert 0 < backend.same_person_distance < 1


def test_detect_finds_the_face_with_landmarks_in_dlib_order(backend, img1):
    faces = backend.detect(img1)

    assert len(faces) == 1
    face = faces[0]
    assert isinstance(face, InsightFaceDetection)
    assert face.score > 0.99
    np.testing.assert_allclose(face.box, expected_box(img1, 640), atol=0.5)
    left, top, right, bottom = face.box
    assert 0 <= left < right <= img1.width and 0 <= top < bottom <= img1.height
    keypoints = (np.array(FACE_CENTRE) + FACE_KEYPOINTS) * img1.height / 640
    np.testing.assert_allclose(face.keypoints, keypoints, atol=0.5)

    landmarks = face.landmarks
    assert landmarks.shape == (5, 2)
    assert np.all((landmarks >= face.box[:2]) & (landmarks <= face.box[2:]))
    right_outer, right_inner, left_outer, left_inner, nose = landmarks
    assert right_outer[0] > right_inner[0] > left_inner[0] > left_outer[0]
    np.testing.assert_allclose((right_outer + right_inner) / 2, face.keypoints[1], atol=1e-3)
    np.testing.assert_allclose((left_outer + left_inner) / 2, face.keypoints[0], atol=1e-3)
    np.testing.assert_allclose(nose, face.keypoints[2])
    # The tiny detector's eyes sit on img1's real eyes, so the synthesised corners land near dlib's.
    dlib_face = DlibBackend().detect(img1)[0]
    assert np.abs(landmarks[:4] - dlib_face.landmarks[:4]).max() < 0.05 * dlib_face.width


def test_detection_size_is_used(pack, img1):
    face = InsightFaceBackend(pack, detection_size=(1280, 1280)).detect(img1)[0]

    np.testing.assert_allclose(face.box, expected_box(img1, 1280), atol=0.5)


def test_detect_finds_no_face_in_a_dark_image(backend):
    assert backend.detect(Image.new("RGB", (800, 600))) == []


def test_align_returns_an_upright_crop_of_the_requested_size(backend, img1):
    face = backend.detect(img1)[0]

    assert backend.align(img1, face).size == (150, 150)
    crop = backend.align(img1, face, size=200, padding=0.5)
    assert crop.size == (200, 200) and crop.mode == "RGB"
    assert np.asarray(crop).std() > 10  # image content, not the black border


def test_align_without_padding_is_insightface_norm_crop(backend, img1):
    from insightface.utils.face_align import norm_crop

    face = backend.detect(img1)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # norm_crop calls scikit-image's deprecated estimate()
        reference = norm_crop(np.asarray(img1), face.keypoints, image_size=112)

    crop = np.asarray(backend.align(img1, face, size=112, padding=0.0)).astype(int)
    assert np.abs(crop - reference).max() <= 1


def test_embed_is_a_deterministic_unit_vector_matching_insightface(backend, pack, img1, img2):
    from insightface.app.common import Face as InsightFace
    from insightface.model_zoo import get_model

    face = backend.detect(img1)[0]
    embedding = backend.embed(img1, face)

    assert embedding.shape == (EMBEDDING_SIZE,) and embedding.dtype == np.float32
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(backend.embed(img1, face), embedding)
    recogniser = get_model(str(pack / RECOGNISER), providers=["CPUExecutionProvider"])
    bgr = np.ascontiguousarray(np.asarray(img1)[:, :, ::-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        reference = recogniser.get(bgr, InsightFace(kps=face.keypoints))
    np.testing.assert_allclose(embedding, reference / np.linalg.norm(reference), atol=1e-4)

    other = backend.embed(img2, backend.detect(img2)[0])
    assert embedding_distance(backend, embedding, other) > 0.01
    assert embedding_distance(backend, embedding, embedding) < 1e-6


def test_align_and_embed_refuse_faces_from_other_backends(backend, img1):
    face = Face(box=(0.0, 0.0, 10.0, 10.0), landmarks=np.zeros((5, 2), dtype=np.float32), score=1.0)

    with pytest.raises(ValueError, match="its own detect"):
        backend.embed(img1, face)
    with pytest.raises(ValueError, match="its own detect"):
        backend.align(img1, face)


EXPECTED = r"expected a detection model \(SCRFD \.onnx with 5 keypoints.*\) and a recognition model \(ArcFace \.onnx"


def test_missing_directory(tmp_path, home):
    missing = tmp_path / "no-such-pack"

    with pytest.raises(FaceBackendError, match=EXPECTED) as error:
        InsightFaceBackend(missing)

    assert f"{missing} is not a directory" in str(error.value)
    assert not (home / ".insightface").exists()


@pytest.mark.parametrize(
    ("names", "found"),
    [
        ((), "found: no .onnx files"),
        ((RECOGNISER,), f"found: {RECOGNISER} (recognition)"),
        ((DETECTOR,), f"found: {DETECTOR} (detection)"),
    ],
)
def test_incomplete_pack(tmp_path, models, home, names, found):
    (tmp_path / "README.txt").write_text("not a model")
    make_pack(tmp_path, models, *names)

    with pytest.raises(FaceBackendError, match=EXPECTED) as error:
        InsightFaceBackend(tmp_path)

    assert str(error.value).endswith(f"in {tmp_path}; {found}")
    assert not (home / ".insightface").exists()


def test_detector_without_keypoints(tmp_path, models):
    make_pack(tmp_path, models, "no_keypoints.onnx", RECOGNISER)

    with pytest.raises(FaceBackendError, match=r"no_keypoints\.onnx predicts no keypoints"):
        InsightFaceBackend(tmp_path)


def test_unreadable_model(tmp_path, models):
    make_pack(tmp_path, models, RECOGNISER)
    (tmp_path / DETECTOR).write_bytes(b"not onnx")

    with pytest.raises(FaceBackendError, match=re.escape(f"cannot load {tmp_path / DETECTOR}")):
        InsightFaceBackend(tmp_path)
