"""Tracker configs: a shipped name (`deepsort`, `strongsort`, `mot-reid`, `motion`, `motion_yolo`) or a YAML path,
plus `--set`."""

from __future__ import annotations

import os

from mot_reid import config
from trackers import TrackerConfig

# `auto` picks by what the tracker is fed: the tuned `mot-reid` config needs appearance features (its
# global matching and wider cosine gate are measured to help with ReID and to hurt motion-only), while
# motion-only runs get `motion`, chosen leave-one-sequence-out on seven MOT15 sequences (README). Its
# confident/weak split is in detector score units: `motion` is chosen on Faster R-CNN det.txt scores
# (median 0.98 on PETS09-S2L1), `motion_yolo` on COCO YOLO person scores (median 0.77 there), so a
# motion-only run on boxes from mot-reid's own YOLO detector gets `motion_yolo`.
AUTO = "auto"


def resolve_tracker_name(name_or_path: str | os.PathLike, with_appearance: bool,
                         detector_kind: str = "file") -> str | os.PathLike:
    """`auto` -> a shipped config name; `detector_kind` is the detector's info kind (yolo, hog, file)."""
    if str(name_or_path) != AUTO:
        return name_or_path
    if with_appearance:
        return "mot-reid"
    return "motion_yolo" if detector_kind == "yolo" else "motion"


def load_tracker_config(name_or_path: str | os.PathLike = "deepsort",
                        overrides: list[str] | None = None) -> TrackerConfig:
    path = config.resolve_config_path(name_or_path, kind="tracker")
    try:
        return config.load(TrackerConfig, path, overrides)
    except config.UserError as exc:
        raise config.UserError(f"tracker config {path.name}: {exc}") from None
