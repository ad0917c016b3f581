"""A constant-velocity box Kalman filter, batched across all tracks.

State per track (8,): centre x, centre y, aspect ratio w/h, height, and their velocities.
Measurement (4,): centre x, centre y, aspect ratio, height. Process and measurement noise scale
with the box height (DeepSORT's std weights 1/20 for position, 1/160 for velocity).

Why not one `filterpy.kalman.KalmanFilter` per track: its per-object Python calls cost
milliseconds per frame at 50 tracks (see BENCHMARKS.md, section bench_tracker). These batched
equations are the same linear-Gaussian steps; tests/test_kalman.py holds them equal to
filterpy's `KalmanFilter.predict/update` step for step.
"""

from __future__ import annotations

import numpy as np

NDIM = 4
_F = np.eye(2 * NDIM)
_F[:NDIM, NDIM:] = np.eye(NDIM)  # x' = x + v (unit time step)
_H = np.eye(NDIM, 2 * NDIM)


def transition_matrix() -> np.ndarray:
    return _F.copy()


def measurement_matrix() -> np.ndarray:
    return _H.copy()


class BoxKalman:
    """Batched filter equations; callers hold means (N,8) and covariances (N,8,8)."""

    def __init__(self, std_weight_position: float = 1.0 / 20, std_weight_velocity: float = 1.0 / 160):
        self.w_pos = std_weight_position
        self.w_vel = std_weight_velocity

    def initiate(self, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New tracks from (N,4) xyah measurements: zero velocity, wide velocity uncertainty."""
        z = np.asarray(measurement, dtype=np.float64).reshape(-1, NDIM)
        mean = np.concatenate([z, np.zeros_like(z)], axis=1)
        h = z[:, 3]
        std = np.stack([2 * self.w_pos * h, 2 * self.w_pos * h, np.full_like(h, 1e-2), 2 * self.w_pos * h,
                        10 * self.w_vel * h, 10 * self.w_vel * h, np.full_like(h, 1e-5), 10 * self.w_vel * h], axis=1)
        return mean, _diag(std**2)

    def process_noise(self, mean: np.ndarray) -> np.ndarray:
        """Q (N,8,8), scaled by each track's current height."""
        h = mean[:, 3]
        std = np.stack([self.w_pos * h, self.w_pos * h, np.full_like(h, 1e-2), self.w_pos * h,
                        self.w_vel * h, self.w_vel * h, np.full_like(h, 1e-5), self.w_vel * h], axis=1)
        return _diag(std**2)

    def measurement_noise(self, mean: np.ndarray, confidence: np.ndarray | None = None) -> np.ndarray:
        """R (N,4,4), scaled by height; with `confidence` (N,) the NSA scaling (1 - score) is applied."""
        h = mean[:, 3]
        std = np.stack([self.w_pos * h, self.w_pos * h, np.full_like(h, 1e-1), self.w_pos * h], axis=1)
        if confidence is not None:
            std = std * (1.0 - np.asarray(confidence, dtype=np.float64))[:, None]
        return _diag(std**2)

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One time step for all tracks: x = F x, P = F P F' + Q (Q from the pre-step height)."""
        q = self.process_noise(mean)
        mean = mean @ _F.T
        cov = _F @ cov @ _F.T + q
        return mean, cov

    def project(self, mean: np.ndarray, cov: np.ndarray,
                confidence: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Measurement-space mean (N,4) and innovation covariance S = H P H' + R (N,4,4)."""
        return mean[:, :NDIM].copy(), cov[:, :NDIM, :NDIM] + self.measurement_noise(mean, confidence)

    def update(self, mean: np.ndarray, cov: np.ndarray, measurement: np.ndarray,
               confidence: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Correct N tracks with their N matched (N,4) xyah measurements."""
        z_mean, s = self.project(mean, cov, confidence)
        pht = cov[:, :, :NDIM]  # P H'
        # K = P H' S^-1, via a solve against the symmetric S: K' = S^-1 (H P).
        gain = np.swapaxes(np.linalg.solve(s, np.swapaxes(pht, 1, 2)), 1, 2)
        innovation = np.asarray(measurement, dtype=np.float64).reshape(-1, NDIM) - z_mean
        mean = mean + np.einsum("nij,nj->ni", gain, innovation)
        cov = cov - gain @ s @ np.swapaxes(gain, 1, 2)
        return mean, cov

    def gating_distance(self, mean: np.ndarray, cov: np.ndarray, measurements: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance (N tracks, M measurements) in xyah space."""
        z = np.asarray(measurements, dtype=np.float64).reshape(-1, NDIM)
        if len(mean) == 0 or len(z) == 0:
            return np.zeros((len(mean), len(z)))
        z_mean, s = self.project(mean, cov)
        d = z[None, :, :] - z_mean[:, None, :]  # (N,M,4)
        s_inv = np.linalg.inv(s)
        return np.einsum("nmi,nij,nmj->nm", d, s_inv, d)


def _diag(values: np.ndarray) -> np.ndarray:
    n, k = values.shape
    out = np.zeros((n, k, k))
    idx = np.arange(k)
    out[:, idx, idx] = values
    return out
