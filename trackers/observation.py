"""Observation-centric pieces of OC-SORT (Cao et al., CVPR 2023), as pure functions on arrays.

A Kalman track that coasts through an occlusion keeps the velocity it had when it was lost, and its
error grows with every blind step. OC-SORT trusts the detector's observations over that estimate:

- re-update (ORU): when a lost track is matched again, re-run its filter from the state it had at
  its last observation along a virtual path drawn straight from that observation to the new one,
  so the velocity afterwards is the one the two observations imply, not the coasting drift;
- direction consistency (OCM): in association, penalise a detection that lies in a different
  direction from the track's recent observations than the track was moving;
- recovery (OCR): a detection left over may still overlap the box a lost track was last observed
  at (a person who stopped while hidden); the tracker matches those by IoU on `last_box`.

Boxes are pixel x1,y1,x2,y2; Kalman states are those of `trackers.kalman` (xyah + velocities).
"""

from __future__ import annotations

import numpy as np

from trackers import boxes
from trackers.kalman import BoxKalman


def centre_direction(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Unit vectors (..., 2) from the centres of `start` boxes to those of `end` (broadcast); 0 where they coincide."""
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    delta = (end[..., :2] + end[..., 2:]) / 2 - (start[..., :2] + start[..., 2:]) / 2
    norm = np.linalg.norm(delta, axis=-1, keepdims=True)
    return np.where(norm > 1e-6, delta / np.maximum(norm, 1e-6), 0.0)


def direction_cost(velocity: np.ndarray, anchors: np.ndarray, detections: np.ndarray) -> np.ndarray:
    """Angle (T, D) between each track's motion direction and the direction from its anchor box to each
    detection, divided by pi: 0 = straight on, 1 = turned back. Tracks with no direction yet (a zero
    `velocity` row) cost 0 everywhere.

    velocity (T,2) unit vectors, anchors (T,4) the track's earlier observed boxes, detections (D,4).
    """
    velocity = np.asarray(velocity, dtype=np.float64).reshape(-1, 2)
    to_det = centre_direction(np.asarray(anchors).reshape(-1, 1, 4), np.asarray(detections).reshape(1, -1, 4))
    cos = np.clip(np.einsum("tk,tdk->td", velocity, to_det), -1.0, 1.0)
    cost = np.arccos(cos) / np.pi
    # A detection on the anchor itself has no direction either: no evidence, no penalty.
    cost[(np.abs(velocity).sum(axis=1) == 0)[:, None] | (np.abs(to_det).sum(axis=2) == 0)] = 0.0
    return cost


def anchor_box(history: dict[int, np.ndarray], frame: int, delta_t: int) -> np.ndarray | None:
    """The observation a direction is measured from at `frame`: the earliest one in the `delta_t` frames
    before it (a few frames back, so one jittery box does not set the direction), else the latest."""
    for past in range(frame - delta_t, frame):
        if past in history:
            return history[past]
    return history[max(history)] if history else None


def virtual_path(last_xyxy: np.ndarray, new_xyxy: np.ndarray, gap: int) -> np.ndarray:
    """xyah measurements (gap, 4) for the `gap` frames after `last_xyxy`, the last being `new_xyxy`:
    centre, width and height move linearly (constant velocity across the occlusion)."""
    last, new = boxes.xyxy_to_tlwh(last_xyxy).reshape(4), boxes.xyxy_to_tlwh(new_xyxy).reshape(4)
    t = np.arange(1, gap + 1, dtype=np.float64)[:, None] / gap
    centre = (last[:2] + last[2:] / 2) + t * ((new[:2] + new[2:] / 2) - (last[:2] + last[2:] / 2))
    size = last[2:] + t * (new[2:] - last[2:])
    return np.concatenate([centre, size[:, :1] / size[:, 1:], size[:, 1:]], axis=1)


def reupdate(kalman: BoxKalman, observed_mean: np.ndarray, observed_cov: np.ndarray, last_xyxy: np.ndarray,
             new_xyxy: np.ndarray, gap: int) -> tuple[np.ndarray, np.ndarray]:
    """ORU: the state (8,), (8,8) after `gap` predict+update steps from the state at the last observation,
    fed the virtual path to `new_xyxy` (gap = frames between the two observations, >= 1). The virtual
    boxes carry no detection score, so NSA's score scaling does not apply to them; camera-motion
    warps applied while the track coasted are not replayed (use it on static cameras)."""
    mean, cov = observed_mean[None].copy(), observed_cov[None].copy()
    for z in virtual_path(last_xyxy, new_xyxy, gap):
        mean, cov = kalman.predict(mean, cov)
        mean, cov = kalman.update(mean, cov, z[None])
    return mean[0], cov[0]
