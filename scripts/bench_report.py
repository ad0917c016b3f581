"""Shared by the bench_*.py scripts: replace one script's section of BENCHMARKS.md in place.

Each script owns the text between `<!-- begin NAME -->` and `<!-- end NAME -->`, so benchmarks
can be re-run one at a time without touching the others' figures.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

from mot_reid.atomic import write_text

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def machine() -> str:
    """The host in words, for the table captions (CPU model and core count, or the GPU)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores"


def update_section(name: str, markdown: str, path: Path = BENCHMARKS) -> None:
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    write_text(path, text)
