"""One track's life (tentative -> confirmed -> deleted) and its appearance memory.

The Kalman state lives in the tracker's batched arrays; a Track holds everything else.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from trackers.observation import anchor_box, centre_direction


class TrackState(IntEnum):
    TENTATIVE = 1
    CONFIRMED = 2
    DELETED = 3


class Gallery:
    """The last `budget` features of a track (DeepSORT's nearest-neighbour memory).

    A ring buffer: order does not matter for a nearest-neighbour distance, and overwriting the
    oldest row costs one row copy instead of shifting the whole gallery every frame."""

    def __init__(self, budget: int):
        self.budget = budget
        self.buffer: np.ndarray | None = None
        self.count = 0

    def add(self, feature: np.ndarray) -> None:
        if self.buffer is None or self.buffer.shape[1] != feature.shape[0]:
            self.buffer = np.empty((self.budget, feature.shape[0]), dtype=np.float32)
            self.count = 0
        self.buffer[self.count % self.budget] = feature
        self.count += 1

    def matrix(self) -> np.ndarray:
        if self.buffer is None:
            return np.empty((0, 0), dtype=np.float32)
        return self.buffer[: min(self.count, self.budget)]


class EmaMemory:
    """One exponentially smoothed feature (StrongSORT): f = alpha f + (1 - alpha) new, re-normalised."""

    def __init__(self, alpha: float):
        self.alpha = alpha
        self.feature: np.ndarray | None = None

    def add(self, feature: np.ndarray) -> None:
        if self.feature is None:
            self.feature = feature.copy()
        else:
            smoothed = self.alpha * self.feature + (1.0 - self.alpha) * feature
            self.feature = smoothed / max(float(np.linalg.norm(smoothed)), 1e-12)

    def matrix(self) -> np.ndarray:
        return np.empty((0, 0), dtype=np.float32) if self.feature is None else self.feature[None, :]


class Track:
    """Counters and memory of one target. `hits` counts updates; `time_since_update` misses."""

    def __init__(self, track_id: int, n_init: int, max_age: int, memory, score: float, cls: int):
        self.track_id = track_id
        self.n_init = n_init
        self.max_age = max_age
        self.memory = memory
        self.score = score
        self.cls = cls
        self.hits = 1
        self.age = 1
        self.time_since_update = 0
        self.state = TrackState.TENTATIVE if n_init > 1 else TrackState.CONFIRMED
        # Observation memory for the observation-centric switches (trackers/observation.py); the tracker
        # fills it only when one of them is on.
        self.last_box: np.ndarray | None = None  # (4,) xyxy of the last matched detection
        self.history: dict[int, np.ndarray] = {}  # frame -> observed xyxy, the last few frames only
        self.velocity = np.zeros(2)  # unit direction of recent observed motion; 0 until it moved
        self.observed_state: tuple[np.ndarray, np.ndarray] | None = None  # Kalman mean, cov at last_box

    def predict(self) -> None:
        """A new frame started: one frame older, one more frame since the last update."""
        self.age += 1
        self.time_since_update += 1

    def hit(self, score: float, cls: int, feature: np.ndarray | None) -> None:
        self.hits += 1
        self.time_since_update = 0
        self.score = score
        self.cls = cls
        if feature is not None:
            self.memory.add(feature)
        if self.state == TrackState.TENTATIVE and self.hits >= self.n_init:
            self.state = TrackState.CONFIRMED

    def observe(self, frame: int, xyxy: np.ndarray, delta_t: int) -> None:
        """Remember the box matched at `frame`; the motion direction is measured from `delta_t` frames back."""
        anchor = anchor_box(self.history, frame, delta_t)
        if anchor is not None:
            direction = centre_direction(anchor, xyxy)
            if direction.any():
                self.velocity = direction
        self.last_box = np.array(xyxy, dtype=np.float64)
        self.history[frame] = self.last_box
        for old in [f for f in self.history if f < frame - delta_t]:
            del self.history[old]

    def miss(self) -> None:
        """Not matched this frame: a tentative track dies at once, a confirmed one after max_age misses."""
        if self.state == TrackState.TENTATIVE or self.time_since_update > self.max_age:
            self.state = TrackState.DELETED

    @property
    def is_confirmed(self) -> bool:
        return self.state == TrackState.CONFIRMED

    @property
    def is_deleted(self) -> bool:
        return self.state == TrackState.DELETED
