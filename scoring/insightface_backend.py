"""Optional face backend on insightface: SCRFD detection and ArcFace embeddings from a local model pack.

The pack is a directory of ONNX files supplied by the user (the product reads it from
HEADSHOT_INSIGHTFACE_PACK), for example insightface's buffalo_l: det_10g.onnx (SCRFD) and w600k_r50.onnx
(ArcFace). insightface's released packs are licensed for non-commercial research only.

Nothing is ever downloaded: each .onnx file is loaded by path with `insightface.model_zoo.get_model`, which
routes a file by its input/output shapes (five or more outputs: SCRFD detection; a square input of at least
112: ArcFace recognition; 192x192: landmarks; 96x96: attributes). Files routed elsewhere are ignored;
`insightface.app.FaceAnalysis` is not used because, given a pack name that is not a directory, it tries to
download the pack from GitHub. Packs described by an insightface manifest.json are read the same way, by
shape; their manifest is not consulted.

insightface, onnxruntime, cv2 and scikit-image are imported on first use, not with this module. Install:
`pip install --no-deps insightface==2.1` (it requires the GUI opencv-python, which collides with
opencv-python-headless) and its runtime dependencies onnxruntime, onnx, scikit-image, tqdm and requests.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from scoring.faces import Face, FaceBackendError, MediaPipeDetails

PROVIDERS = ["CPUExecutionProvider"]
DETECTION_THRESHOLD = 0.5  # SCRFD's own default, also used by insightface's FaceAnalysis
# Half the width of an eye (centre to either corner) over the distance between the eye centres: the mean
# of dlib's 5-point model on shared/data/faces (0.20, standard deviation 0.01 over 19 faces).
EYE_HALF_WIDTH = 0.20
EXPECTED_PACK = (
    "a detection model (SCRFD .onnx with 5 keypoints, e.g. det_10g.onnx) "
    "and a recognition model (ArcFace .onnx, e.g. w600k_r50.onnx)"
)


@dataclass(frozen=True)
class InsightFaceDetection(Face):
    """A `Face` found by `InsightFaceBackend`, keeping the detector's own five keypoints.

    `keypoints` (5, 2) is insightface's order: eye centre on the image's left, eye centre on the image's
    right, nose tip, mouth corner on the image's left, mouth corner on the image's right. `align` and
    `embed` use these (ArcFace alignment needs the mouth corners, which `landmarks` lacks).
    """

    keypoints: np.ndarray = field(kw_only=True)


class InsightFaceBackend(MediaPipeDetails):
    """`FaceBackend` on a user-supplied insightface model pack, run on the CPU with onnxruntime.

    `same_person_distance`: insightface publishes no operating point for its ArcFace packs (see
    deepinsight/insightface#2631). 0.6 cosine distance (cosine similarity 0.4) is a conventional starting
    point within the range used with buffalo_l-class models (similarity 0.3 to 0.5); it was not measured
    here and must be recalibrated on same-person and different-person pairs for each pack.
    """

    name = "insightface"
    embedding_distance = "cosine"
    same_person_distance = 0.6

    def __init__(self, pack_dir: Path, detection_size: tuple[int, int] = (640, 640)):
        self.pack_dir = Path(pack_dir)
        self.detection_size = detection_size
        if not self.pack_dir.is_dir():
            raise FaceBackendError(
                f"insightface model pack {self.pack_dir} is not a directory; expected {EXPECTED_PACK} in it"
            )
        from insightface.model_zoo import get_model

        models = {}
        found = []
        for path in sorted(self.pack_dir.glob("*.onnx")):
            try:
                model = get_model(str(path), providers=PROVIDERS)
            except Exception as error:
                raise FaceBackendError(f"cannot load {path} as an insightface model: {error}") from error
            task = getattr(model, "taskname", None)
            found.append(f"{path.name} ({task or 'not recognised'})")
            models.setdefault(task, model)  # like FaceAnalysis: the first file per task, in name order, wins
        detector, recogniser = models.get("detection"), models.get("recognition")
        if detector is None or recogniser is None:
            raise FaceBackendError(
                f"expected {EXPECTED_PACK} in {self.pack_dir}; found: {', '.join(found) or 'no .onnx files'}"
            )
        if not detector.use_kps:
            raise FaceBackendError(
                f"the detection model {detector.model_file} predicts no keypoints; expected {EXPECTED_PACK}"
            )
        self._detector = detector
        self._recogniser = recogniser
        self.model_files = {"detection": Path(detector.model_file), "recognition": Path(recogniser.model_file)}

    def detect(self, image: Image.Image) -> list[Face]:
        """Faces in the image, largest first; `score` is the SCRFD confidence."""
        boxes, keypoints = self._detector.detect(
            _bgr(image), input_size=self.detection_size, det_thresh=DETECTION_THRESHOLD
        )
        faces: list[Face] = [
            InsightFaceDetection(
                box=(float(row[0]), float(row[1]), float(row[2]), float(row[3])),
                landmarks=five_point_landmarks(points),
                score=float(row[4]),
                keypoints=points.astype(np.float32),
            )
            for row, points in zip(boxes, keypoints, strict=True)
        ]
        return sorted(faces, key=lambda face: face.width, reverse=True)

    def align(self, image: Image.Image, face: Face, size: int = 150, padding: float = 0.25) -> Image.Image:
        """ArcFace alignment into a size x size crop with `padding` (a fraction of the face crop) on each side.

        With size 112 and padding 0 this is the crop the recognition model sees (insightface's `norm_crop`).
        """
        return Image.fromarray(_warp(np.asarray(image.convert("RGB")), _keypoints(face), size, padding))

    def embed(self, image: Image.Image, face: Face) -> np.ndarray:
        """The L2-normalised ArcFace embedding (512-D for insightface's packs)."""
        chip = _warp(_bgr(image), _keypoints(face), self._recogniser.input_size[0], 0.0)
        feature = self._recogniser.get_feat(chip).ravel().astype(np.float32)
        return feature / (np.linalg.norm(feature) + 1e-12)


def five_point_landmarks(keypoints: np.ndarray) -> np.ndarray:
    """insightface's five keypoints as `Face.landmarks` (dlib's 5-point order), approximately.

    insightface locates eye centres, not corners: each eye's outer and inner corner are placed on the line
    through both eye centres, `EYE_HALF_WIDTH` inter-ocular distances either side of its centre, so the
    mean of a pair of corners is the detected eye centre. The fifth point is insightface's nose tip, not the
    base of the nose: on frontal faces it sits about 0.2 inter-ocular distances higher (dlib's nose base is
    0.77 below the eye line on shared/data/faces, the nose tip 0.57 in insightface's ArcFace template).
    """
    left_eye, right_eye, nose_tip = keypoints[0], keypoints[1], keypoints[2]
    offset = EYE_HALF_WIDTH * (right_eye - left_eye)
    corners = [right_eye + offset, right_eye - offset, left_eye - offset, left_eye + offset, nose_tip]
    return np.array(corners, dtype=np.float32)


def _keypoints(face: Face) -> np.ndarray:
    if not isinstance(face, InsightFaceDetection):
        raise ValueError("InsightFaceBackend needs a face from its own detect(): ArcFace alignment uses its keypoints")
    return face.keypoints


def _bgr(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


def _warp(pixels: np.ndarray, keypoints: np.ndarray, size: int, padding: float) -> np.ndarray:
    """Map the keypoints onto insightface's ArcFace template by a least-squares similarity transform."""
    import cv2
    from insightface.utils.face_align import arcface_dst
    from skimage.transform import SimilarityTransform

    face_side = size / (1 + 2 * padding)
    target = arcface_dst * (face_side / 112) + padding * face_side
    transform = SimilarityTransform.from_estimate(keypoints, target)
    if not transform:
        raise ValueError(f"cannot align keypoints {keypoints.tolist()}: {transform}")
    return cv2.warpAffine(pixels, transform.params[:2], (size, size), borderValue=0.0)
