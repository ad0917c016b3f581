"""`mot-reid train`: not built yet (issue #4)."""

from __future__ import annotations

from mot_reid.commands import not_built

HELP = "Train the Bag-of-Tricks ReID model from a recipe."


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    return not_built("train", 4)
