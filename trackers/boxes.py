"""The one box-format helper: pixel x1,y1,x2,y2 inside; tlwh, xyah and MOT's 1-based tlwh at the edges.

All functions take and return float arrays of shape (N, 4) (or (4,)), never Python lists.
"""

from __future__ import annotations

import numpy as np


def xyxy_to_tlwh(xyxy: np.ndarray) -> np.ndarray:
    """x1,y1,x2,y2 -> top-left x, top-left y, width, height."""
    out = np.array(xyxy, dtype=np.float64, copy=True)
    out[..., 2:] -= out[..., :2]
    return out


def tlwh_to_xyxy(tlwh: np.ndarray) -> np.ndarray:
    out = np.array(tlwh, dtype=np.float64, copy=True)
    out[..., 2:] += out[..., :2]
    return out


def xyxy_to_xyah(xyxy: np.ndarray) -> np.ndarray:
    """x1,y1,x2,y2 -> centre x, centre y, aspect ratio w/h, height (the Kalman measurement space)."""
    xyxy = np.asarray(xyxy, dtype=np.float64)
    w = xyxy[..., 2] - xyxy[..., 0]
    h = xyxy[..., 3] - xyxy[..., 1]
    return np.stack([xyxy[..., 0] + w / 2, xyxy[..., 1] + h / 2, w / h, h], axis=-1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    xyah = np.asarray(xyah, dtype=np.float64)
    h = xyah[..., 3]
    w = xyah[..., 2] * h
    cx, cy = xyah[..., 0], xyah[..., 1]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def mot_to_xyxy(mot_tlwh: np.ndarray) -> np.ndarray:
    """MOT file boxes (1-based top-left x,y, width, height) -> 0-based pixel x1,y1,x2,y2."""
    out = tlwh_to_xyxy(mot_tlwh)
    return out - 1.0


def xyxy_to_mot(xyxy: np.ndarray) -> np.ndarray:
    """0-based pixel x1,y1,x2,y2 -> MOT file boxes (1-based top-left x,y, width, height)."""
    out = xyxy_to_tlwh(xyxy)
    out[..., :2] += 1.0
    return out


# Sides below this (pixels) are not detections; a denormal-thin box would make the aspect ratio
# (w / h) of the Kalman state overflow to inf.
MIN_SIDE = 1e-2


def valid_boxes(xyxy: np.ndarray) -> np.ndarray:
    """(N,) bool: finite coordinates with width and height of at least MIN_SIDE pixels."""
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(xyxy).all(axis=1)
    with np.errstate(invalid="ignore"):
        sized = (xyxy[:, 2] - xyxy[:, 0] >= MIN_SIDE) & (xyxy[:, 3] - xyxy[:, 1] >= MIN_SIDE)
    return finite & sized
