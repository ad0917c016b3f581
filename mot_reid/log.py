"""The one logger and the one progress bar of the toolkit."""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm

logger = logging.getLogger("mot_reid")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of each message, not the one at set-up
    (callers that redirect stderr, such as test capture or embedding apps, keep working)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def setup_logging(verbose: bool = False) -> None:
    """Plain `level: message` lines on stderr, so stdout stays for results."""
    if logger.handlers:
        logger.setLevel(logging.DEBUG if verbose else logging.INFO)
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def progress(iterable=None, total=None, desc: str = "", unit: str = "it", **kwargs) -> tqdm:
    """A tqdm bar on stderr; hidden when stderr is not a terminal (CI logs stay clean)."""
    kwargs.setdefault("disable", None)
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                leave=False, **kwargs)
