"""`mot-reid track`: not built yet (issue #6)."""

from __future__ import annotations

from mot_reid.commands import not_built

HELP = "Track people in a video, image folder or stream and write tracks.json."


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    return not_built("track", 6)
