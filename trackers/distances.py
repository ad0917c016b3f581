"""Cost matrices between tracks (rows) and detections (columns): IoU, cosine, Mahalanobis gate."""

from __future__ import annotations

import numpy as np

# Cost of a pair the gate forbids; anything above a stage's threshold is never matched.
INFTY_COST = 1e5


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (N, M) between x1,y1,x2,y2 boxes a (N,4) and b (M,4)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def iou_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 1.0 - iou_matrix(a, b)


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - cosine similarity (N, M) for L2-normalised rows a (N,D), b (M,D)."""
    return 1.0 - np.asarray(a, dtype=np.float32) @ np.asarray(b, dtype=np.float32).T


def nearest_cosine_distance(galleries: list[np.ndarray], features: np.ndarray) -> np.ndarray:
    """Per track the smallest cosine distance from any stored feature to each detection (T, M).

    `galleries[t]` is (K_t, D); an empty gallery gives distance 1 (orthogonal: never a match
    under any sane max_cosine_distance). One matrix product per track: no copy of all galleries.
    """
    out = np.ones((len(galleries), len(features)), dtype=np.float64)
    if len(features) == 0:
        return out
    for t, gallery in enumerate(galleries):
        if len(gallery):
            out[t] = (1.0 - gallery @ features.T).min(axis=0)
    return out


def gate(cost: np.ndarray, mahalanobis: np.ndarray, threshold: float, appearance_weight: float = 1.0) -> np.ndarray:
    """Forbid pairs beyond the motion gate; with appearance_weight < 1 also blend in the motion distance

    (StrongSORT's `lambda * appearance + (1 - lambda) * Mahalanobis`)."""
    out = cost.astype(np.float64, copy=True)
    if appearance_weight < 1.0:
        out = appearance_weight * out + (1.0 - appearance_weight) * mahalanobis
    out[mahalanobis > threshold] = INFTY_COST
    return out
