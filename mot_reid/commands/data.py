"""`mot-reid data`: not built yet (issue #4)."""

from __future__ import annotations

from mot_reid.commands import not_built

HELP = "Dataset tools; mot2reid cuts ReID crops from MOT ground truth."


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    return not_built("data", 4)
