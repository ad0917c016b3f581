"""Detectors: Ultralytics YOLO (any weights it loads), OpenCV's HOG people detector, or a MOT det file.

Every detector maps a batch of frames (with their 1-based frame numbers) to one `Detections` per
frame: float32 pixel x1,y1,x2,y2 boxes, scores and integer classes.

`--detector auto` looks for YOLO weights in this order and uses the first it finds:
1. the file named by the environment variable `MOT_REID_DETECTOR`;
2. `yolo26n.pt`, `yolo11n.pt`, `yolov8n.pt` in the current folder, then in Ultralytics' weights folder
   (`yolo settings` -> `weights_dir`);
3. Ultralytics' default weights (`yolo26n.pt`), downloaded by Ultralytics, if github.com answers
   within a few seconds;
4. offline: one warning line, then OpenCV's HOG people detector (no download; recorded in the output).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mot_reid.errors import UserError
from mot_reid.log import logger
from trackers import boxes

AUTO_WEIGHT_NAMES = ("yolo26n.pt", "yolo11n.pt", "yolov8n.pt")
ULTRALYTICS_DEFAULT = "yolo26n.pt"
PERSON = 0  # COCO class id


@dataclass
class Detections:
    xyxy: np.ndarray  # (N, 4) float32 pixels
    score: np.ndarray  # (N,) float32
    cls: np.ndarray  # (N,) int64

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.xyxy)


@dataclass
class DetectorSettings:
    conf: float = 0.25
    iou: float = 0.7
    imgsz: int = 640
    classes: list[int] = field(default_factory=lambda: [PERSON])
    half: bool = True  # fp16 on CUDA only; ignored on CPU


class YoloDetector:
    """Ultralytics YOLO (.pt, .onnx, NAME_openvino_model/, .engine, ...), batched over frames."""

    def __init__(self, weights: str, device: str, settings: DetectorSettings):
        from ultralytics import YOLO

        try:
            self.model = YOLO(weights, task="detect")
        except FileNotFoundError:
            raise UserError(f"detector weights not found: {weights}") from None
        except Exception as exc:  # noqa: BLE001 - Ultralytics raises many kinds for a bad file
            first_sentence = (str(exc).splitlines()[0] if str(exc) else repr(exc)).split(". ")[0]
            raise UserError(f"cannot load detector {weights}: {first_sentence}") from None
        self.device = device
        self.settings = settings
        self.info = {"kind": "yolo", "weights": str(weights)}
        self._precision = {}
        if settings.half and device.startswith("cuda"):
            from ultralytics.cfg import DEFAULT_CFG_DICT

            # Ultralytics 8.4 replaced `half` by `quantize`; older releases only know `half`.
            self._precision = {"quantize": 16} if "quantize" in DEFAULT_CFG_DICT else {"half": True}
        # Ultralytics opens the weights lazily, at the first predict: one blank frame now makes a file it
        # cannot run (a text file, a foreign format) a one-line error before any output is started.
        try:
            self([np.zeros((64, 64, 3), np.uint8)], [0])
        except Exception as exc:  # noqa: BLE001 - Ultralytics raises many kinds for a bad file
            first_sentence = (str(exc).splitlines()[0] if str(exc) else repr(exc)).split(". ")[0]
            raise UserError(f"cannot load detector {weights}: {first_sentence}") from None

    def __call__(self, frames: list[np.ndarray], indices: list[int]) -> list[Detections]:
        s = self.settings
        results = self.model.predict(frames, conf=s.conf, iou=s.iou, imgsz=s.imgsz, classes=s.classes or None,
                                     device=self.device, verbose=False, **self._precision)
        out = []
        for r in results:
            boxes = r.boxes
            out.append(Detections(boxes.xyxy.cpu().numpy().astype(np.float32),
                                  boxes.conf.cpu().numpy().astype(np.float32),
                                  boxes.cls.cpu().numpy().astype(np.int64)))
        return out


class HogDetector:
    """OpenCV's built-in HOG + linear SVM people detector: needs no download, CPU only.

    Its window is 64x128, so frames are upscaled (`upscale`) to reach people smaller than that.
    Scores are the SVM margins squashed into (0, 1) by a sigmoid, so confidence thresholds apply.
    """

    def __init__(self, settings: DetectorSettings, upscale: float = 2.0, pyramid_scale: float = 1.1):
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.settings = settings
        self.upscale = upscale
        self.pyramid_scale = pyramid_scale
        self.info = {"kind": "hog", "weights": "opencv HOGDescriptor_getDefaultPeopleDetector"}

    def __call__(self, frames: list[np.ndarray], indices: list[int]) -> list[Detections]:
        return [self._one(f) for f in frames]

    def _one(self, frame: np.ndarray) -> Detections:
        if self.settings.classes and PERSON not in self.settings.classes:
            return Detections.empty()
        image = cv2.resize(frame, None, fx=self.upscale, fy=self.upscale) if self.upscale != 1 else frame
        rects, weights = self.hog.detectMultiScale(image, winStride=(8, 8), padding=(8, 8), scale=self.pyramid_scale)
        if len(rects) == 0:
            return Detections.empty()
        rects = np.asarray(rects, np.float32) / self.upscale
        score = 1.0 / (1.0 + np.exp(-np.ravel(weights).astype(np.float32)))
        keep = cv2.dnn.NMSBoxes(rects.tolist(), score.tolist(), self.settings.conf, 0.45)
        keep = np.ravel(keep).astype(int) if len(keep) else np.zeros(0, int)
        xyxy = boxes.tlwh_to_xyxy(rects[keep]).astype(np.float32)
        return Detections(xyxy, score[keep].astype(np.float32), np.full(len(keep), PERSON, np.int64))


class FileDetections:
    """Public-detection protocol: boxes come from a MOT `det.txt` (frame,-1,x,y,w,h,score,...)."""

    def __init__(self, path: str, min_score: float | None = None):
        from mot_reid.mot_data import read_detections

        if not Path(path).is_file():
            raise UserError(f"detections file not found: {path}")
        self.by_frame = read_detections(path)
        self.min_score = min_score
        self.info = {"kind": "file", "weights": str(path)}

    def __call__(self, frames: list[np.ndarray], indices: list[int]) -> list[Detections]:
        out = []
        for index in indices:
            entry = self.by_frame.get(index)
            if entry is None:
                out.append(Detections.empty())
                continue
            xyxy, score = (np.asarray(a, np.float32) for a in entry[:2])
            if self.min_score is not None:
                keep = score >= self.min_score
                xyxy, score = xyxy[keep], score[keep]
            out.append(Detections(xyxy.reshape(-1, 4), score, np.full(len(score), PERSON, np.int64)))
        return out


def online(host: str = "github.com", port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a download could start: a TCP connect with a short timeout, so offline never hangs."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_local_weights(cwd: Path | None = None) -> Path | None:
    """The first local YOLO weights file `--detector auto` would use (see the module docstring)."""
    env = os.environ.get("MOT_REID_DETECTOR")
    if env:
        if not Path(env).is_file():
            raise UserError(f"MOT_REID_DETECTOR points to a missing file: {env}")
        return Path(env)
    folders = [cwd or Path.cwd()]
    try:
        from ultralytics.utils import SETTINGS

        folders.append(Path(SETTINGS["weights_dir"]))
    except Exception:  # noqa: BLE001 - settings are optional here
        pass
    for folder in folders:
        for name in AUTO_WEIGHT_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def yolo_with_backend(weights: str, device: str, settings: DetectorSettings, backend: str = "auto") -> YoloDetector:
    """YOLO weights on `backend`: an exported file runs on its runtime (Ultralytics picks it from the file);
    .pt weights with an exported backend are exported once by Ultralytics into the cache and run from there."""
    from mot_reid import runtime

    fmt = runtime.check_detector_file(weights)
    chosen = runtime.pick_backend(fmt, backend, "detector", weights)
    if fmt == "torch" and chosen != "torch":
        from mot_reid.export import cached_detector_export

        weights = str(cached_detector_export(weights, chosen, settings.imgsz))
    elif chosen != "torch":
        runtime.import_runtime(chosen)  # Ultralytics would try to pip-install it; one line instead
    detector = YoloDetector(weights, device, settings)
    detector.info["backend"] = chosen
    return detector


def detector_kind(spec: str, detections: str | None = None, is_online=online) -> str:
    """The `info["kind"]` that `build_detector` will give (file, hog or yolo), without loading a model."""
    if detections:
        return "file"
    if spec == "hog" or (spec == "auto" and find_local_weights() is None and not is_online()):
        return "hog"
    return "yolo"


def build_detector(spec: str, device: str, settings: DetectorSettings, detections: str | None = None,
                   is_online=online, backend: str = "auto"):
    """`detections` (a det.txt) wins; else `spec` is 'auto', 'hog' or a weights path."""
    if detections:
        return FileDetections(detections, min_score=None)
    if spec == "hog":
        return HogDetector(settings)
    if spec != "auto":
        if not Path(spec).exists():
            raise UserError(f"detector weights not found: {spec}")
        return yolo_with_backend(spec, device, settings, backend)
    local = find_local_weights()
    if local is not None:
        logger.info("detector: using local YOLO weights %s", local)
        return yolo_with_backend(str(local), device, settings, backend)
    if is_online():
        logger.info("detector: no local YOLO weights; asking Ultralytics for %s", ULTRALYTICS_DEFAULT)
        return YoloDetector(ULTRALYTICS_DEFAULT, device, settings)
    logger.warning("detector: no YOLO weights found locally and no network to download %s; "
                   "falling back to OpenCV's HOG people detector", ULTRALYTICS_DEFAULT)
    detector = HogDetector(settings)
    detector.info["fallback_reason"] = "offline, no local YOLO weights"
    return detector
