"""`mot-reid eval`: not built yet (issue #3)."""

from __future__ import annotations

from mot_reid.commands import not_built

HELP = "Run the tracker over MOT Challenge sequences and score it with TrackEval (HOTA, IDF1, MOTA)."


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    return not_built("eval", 3)
