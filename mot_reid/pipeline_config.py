"""Settings of `mot-reid track`: a dataclass per stage, loaded from `configs/pipeline/*.yaml`.

Every key can be overridden with `--set section.key=value` (e.g. `--set detector.batch=16`);
keys under `tracker.` go to the tracker's own config (`configs/tracker/*.yaml`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mot_reid.runtime import BACKENDS
from trackers.config import check_ranges


@dataclass
class DetectorConfig:
    weights: str = "auto"  # auto | hog | a YOLO weights file (.pt, .onnx, .engine, ...)
    detections: str | None = None  # a MOT det.txt: public detections replace the detector
    conf: float = 0.25  # minimum confidence kept (Ultralytics' default); lower finds more, adds false boxes
    iou: float = 0.7  # NMS IoU of the detector
    imgsz: int = 640  # detector input size; larger finds smaller people, slower
    classes: list[int] = field(default_factory=lambda: [0])  # COCO ids kept; 0 = person
    half: bool = True  # fp16 detector on CUDA (ignored on CPU)
    batch: int = 8  # frames per detector call for files; live streams always use 1 (lowest latency)
    hog_upscale: float = 2.0  # HOG fallback: upscale so people under its 128-px window are found

    def __post_init__(self):
        check_ranges(self, {
            "conf": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
            "iou": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
            "imgsz": (lambda v: v >= 32, ">= 32"),  # YOLO's largest stride; smaller is no image at all
            "batch": (lambda v: v >= 1, ">= 1"),
            "hog_upscale": (lambda v: v > 0, "> 0"),
        })


@dataclass
class EmbedderConfig:
    weights: str = "auto"  # auto | none | a mot-reid checkpoint | a torchreid OSNet file
    auto_checkpoint: str | None = None  # the project checkpoint `auto` prefers (else $MOT_REID_CHECKPOINT)
    max_crops: int = 256  # crops per ReID forward pass; bounds memory on crowded frames
    # mot-reid checkpoints: `before` the BNNeck (the triplet/center-loss space, what BoT recommends for
    # matching) or `after` it (the ID-classification space); torchreid OSNet files have one feature only.
    feature: str = "before"

    def __post_init__(self):
        check_ranges(self, {"max_crops": (lambda v: v >= 1, ">= 1"),
                            "feature": (lambda v: v in ("before", "after"), "before or after")})


@dataclass
class PipelineConfig:
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    # auto: `mot-reid` when a ReID model is loaded; motion only: `motion_yolo` on YOLO boxes, else `motion`;
    # or a tracker name / YAML path
    tracker: str = "auto"
    device: str = "auto"  # auto (first CUDA GPU, else CPU) | cpu | cuda:N
    # auto (torch, or an exported file's runtime) | torch | onnxruntime | openvino | tensorrt: runs the
    # detector and embedder; torch weights with another backend are exported once into ~/.cache/mot-reid
    backend: str = "auto"
    queue_size: int = 16  # decoded frames buffered ahead of the models; bounds memory
    max_frames: int | None = None  # stop after this many frames (None: the whole source)
    trail: int = 20  # length of the track trails drawn in --save-video, in frames

    def __post_init__(self):
        check_ranges(self, {
            "queue_size": (lambda v: v >= 1, ">= 1"),
            "max_frames": (lambda v: v >= 1, ">= 1"),
            "trail": (lambda v: v >= 0, ">= 0"),
            "backend": (lambda v: v in BACKENDS, f"one of {', '.join(BACKENDS)}"),
        })
