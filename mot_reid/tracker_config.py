"""Tracker configs: a shipped name (`deepsort`, `strongsort`) or a YAML path, plus `--set` overrides."""

from __future__ import annotations

import os

from mot_reid import config
from trackers import TrackerConfig


def load_tracker_config(name_or_path: str | os.PathLike = "deepsort",
                        overrides: list[str] | None = None) -> TrackerConfig:
    path = config.resolve_config_path(name_or_path, kind="tracker")
    return config.load(TrackerConfig, path, overrides)
