"""`mot-reid eval-reid`: not built yet (issue #4)."""

from __future__ import annotations

from mot_reid.commands import not_built

HELP = "Evaluate a ReID checkpoint: CMC rank-1/5/10, mAP, mINP, optional re-ranking."


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    return not_built("eval-reid", 4)
