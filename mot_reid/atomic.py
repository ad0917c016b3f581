"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A crash or Ctrl-C mid-write leaves the previous file (or nothing), never half a file.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mot_reid.errors import UserError


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it is renamed to `target`.

    `suffix` defaults to the target's own suffix, so writers that pick a format from the file
    name (OpenCV's VideoWriter, torch.save, matplotlib) behave as for the target.
    """
    target = Path(target)
    check_writable(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=suffix if suffix is not None else target.suffix
        )
    except OSError as exc:
        raise UserError(f"cannot write {target}: {exc.strerror}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; give the result the permissions any new file gets under the umask.
    umask = os.umask(0)
    os.umask(umask)
    tmp_path.chmod(0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def check_writable(*targets: str | os.PathLike | None) -> None:
    """Refuse up front an output that cannot be written (a folder in its place, a file or a read-only folder
    above it), so a long run does not end in an error with nothing saved. Creates nothing; None is skipped."""
    for target in targets:
        if target is None:
            continue
        target = Path(target)
        if target.is_dir():
            raise UserError(f"cannot write {target}: it is a folder")
        above = target.parent
        while not above.exists() and above != above.parent:
            above = above.parent
        if not above.is_dir():
            raise UserError(f"cannot write {target}: {above} is a file, not a folder")
        if not os.access(above, os.W_OK | os.X_OK):
            raise UserError(f"cannot write {target}: {above} is not writable")


def remove_leftovers(target: str | os.PathLike) -> None:
    """Delete temp files of writes to `target` that never finished (the writer was killed, e.g. SIGKILL)."""
    target = Path(target)
    for tmp in target.parent.glob(f".{glob.escape(target.name)}.*"):
        tmp.unlink(missing_ok=True)


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike, obj) -> None:
    write_text(target, json.dumps(obj, indent=2, allow_nan=False) + "\n")
