"""What produced an output: package versions and the host, saved beside every result."""

from __future__ import annotations

import platform
import sys
from importlib import metadata


def versions() -> dict[str, str]:
    """Versions of mot-reid and the libraries whose behaviour shapes its results."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in ("mot-reid", "torch", "torchvision", "numpy", "scipy", "filterpy", "opencv-python",
                 "ultralytics", "trackeval"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out
