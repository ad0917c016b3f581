"""`TrackerConfig`: every tracker switch, with DeepSORT's reference values as defaults.

Defaults are those of nwojke/deep_sort's `evaluate_motchallenge.py` and its `kalman_filter.py`;
the StrongSORT-style switches (EMA memory, NSA, global matching, cost fusion, second
association of low-score boxes, camera-motion compensation) and OC-SORT's observation-centric
ones (re-update after a gap, direction consistency, recovery by the last observed box) are all off. The shipped YAML
files in `configs/tracker/` document each key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# 0.95 quantile of the chi-square distribution with 4 degrees of freedom (x, y, aspect, height).
CHI2_95_4DOF = 9.4877


@dataclass
class TrackerConfig:
    # Detections
    min_confidence: float = 0.3  # boxes scoring below are not tracked (unless second_association)
    min_box_height: float = 0.0  # boxes shorter than this (pixels) are dropped
    # Lifecycle
    n_init: int = 3  # consecutive hits before a tentative track is confirmed
    max_age: int = 30  # misses after which a confirmed track is deleted (frames at `reference_frame_rate`)
    scale_max_age_by_frame_rate: bool = False  # max_age * frame_rate / reference_frame_rate
    reference_frame_rate: float = 30.0
    report_coasting_frames: int = 1  # report confirmed tracks missed for at most this many frames
    output_box: Literal["kalman", "detection"] = "kalman"  # box reported for a matched track
    # Kalman filter (noise scaled by box height)
    std_weight_position: float = 1.0 / 20
    std_weight_velocity: float = 1.0 / 160
    nsa: bool = False  # scale measurement noise by (1 - detection score), StrongSORT's NSA Kalman
    # Association
    gating_threshold: float = CHI2_95_4DOF  # squared Mahalanobis gate on the motion
    appearance: Literal["gallery", "ema"] = "gallery"  # per-track feature memory
    nn_budget: int = 100  # gallery size per track
    ema_alpha: float = 0.9  # weight of the old feature in the EMA memory
    max_cosine_distance: float = 0.2  # appearance matches above this cosine distance are rejected
    appearance_weight: float = 1.0  # lambda: cost = lambda * cosine + (1 - lambda) * Mahalanobis
    matching: Literal["cascade", "global"] = "cascade"  # cascade by time since update, or one matching
    max_iou_distance: float = 0.7  # IoU-stage matches above 1 - IoU are rejected
    # Motion-only first stage (no features): confirmed tracks matched by gated IoU. Not a DeepSORT
    # constant (DeepSORT always has features); 0.9 measured best on PETS09-S2L1 and TUD-Campus.
    motion_max_iou_distance: float = 0.9
    second_association: bool = False  # ByteTrack-style: low-score boxes may extend unmatched tracks
    low_score_threshold: float = 0.1  # lowest score used by the second association
    second_max_iou_distance: float = 0.5
    # OC-SORT's observation-centric switches (trackers/observation.py)
    reupdate_after_gap: bool = False  # ORU: a track matched after a gap is re-filtered along a straight virtual path
    direction_weight: float = 0.0  # OCM: weight of the direction-change cost added to the motion-only first stage
    direction_delta_t: int = 3  # frames back from which a track's direction of motion is measured
    recovery: bool = False  # OCR: leftover boxes may match lost tracks by IoU with their last observed box
    recovery_max_iou_distance: float = 0.7
    # Camera-motion compensation (moving cameras only)
    cmc: Literal["none", "ecc", "sparse_flow"] = "none"
    cmc_downscale: int = 2  # estimate the warp on a frame shrunk by this factor

    def __post_init__(self):
        check_ranges(self, {
            "min_confidence": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
            "min_box_height": (lambda v: v >= 0, ">= 0"),
            "n_init": (lambda v: v >= 1, ">= 1"),
            "max_age": (lambda v: v >= 0, ">= 0"),
            "nn_budget": (lambda v: v >= 1, ">= 1"),
            "report_coasting_frames": (lambda v: v >= 0, ">= 0"),
            "ema_alpha": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
            "appearance_weight": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
            "max_cosine_distance": (lambda v: 0.0 <= v <= 2.0, "in [0, 2]"),
            "max_iou_distance": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
            "motion_max_iou_distance": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
            "second_max_iou_distance": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
            "gating_threshold": (lambda v: v > 0, "> 0"),
            "std_weight_position": (lambda v: v > 0, "> 0"),
            "std_weight_velocity": (lambda v: v > 0, "> 0"),
            "reference_frame_rate": (lambda v: v > 0, "> 0"),
            "cmc_downscale": (lambda v: v >= 1, ">= 1"),
            "direction_weight": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
            "direction_delta_t": (lambda v: v >= 1, ">= 1"),
            "recovery_max_iou_distance": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
            "low_score_threshold": (lambda v: 0.0 <= v <= self.min_confidence, "in [0, min_confidence]"),
        })


class RangeError(ValueError):
    """A config value outside its range; `key` names the field so the loader can say where it came from."""

    def __init__(self, key: str, text: str, value):
        super().__init__(f"{key} must be {text}, got {value!r}")
        self.key, self.text, self.value = key, text, value


def check_ranges(cfg, rules: dict) -> None:
    """The one range check of every config dataclass: `{field: (predicate, "range in words")}`; None passes."""
    for key, (ok, text) in rules.items():
        value = getattr(cfg, key)
        if value is not None and not ok(value):
            raise RangeError(key, text, value)
