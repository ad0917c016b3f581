"""Camera-motion compensation: the frame-to-frame affine warp of a moving camera, applied to tracks.

Two OpenCV estimators: ECC (`cv2.findTransformECC`, dense, robust, slower) and sparse optical
flow (good corners tracked by Lucas-Kanade, then a RANSAC partial affine). Static cameras should
leave this off: the estimate is noise there and costs time.
"""

from __future__ import annotations

import cv2
import numpy as np


class CameraMotion:
    def __init__(self, method: str = "sparse_flow", downscale: int = 2):
        if method not in ("ecc", "sparse_flow"):
            raise ValueError(f"unknown camera-motion method {method!r}; use 'ecc' or 'sparse_flow'")
        self.method = method
        self.downscale = max(1, int(downscale))
        self.previous: np.ndarray | None = None

    def estimate(self, frame: np.ndarray) -> np.ndarray:
        """2x3 affine taking previous-frame pixel coordinates to this frame's (identity on the first)."""
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        if self.downscale > 1:
            gray = cv2.resize(gray, (gray.shape[1] // self.downscale, gray.shape[0] // self.downscale))
        warp = np.eye(2, 3, dtype=np.float32)
        if self.previous is not None and self.previous.shape == gray.shape:
            warp = self._ecc(self.previous, gray) if self.method == "ecc" else self._flow(self.previous, gray)
        self.previous = gray
        warp = warp.astype(np.float64)
        warp[:, 2] *= self.downscale  # translation back to full-resolution pixels
        return warp

    @staticmethod
    def _ecc(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        warp = np.eye(2, 3, dtype=np.float32)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
        try:
            # With previous as template, the warp found satisfies current(W(x)) = previous(x): it maps
            # previous-frame coordinates to current-frame ones, the direction tracks move in.
            _, warp = cv2.findTransformECC(previous, current, warp, cv2.MOTION_EUCLIDEAN, criteria, None, 1)
        except cv2.error:  # no convergence (flat or changed scene): assume a still camera
            return np.eye(2, 3, dtype=np.float32)
        return warp

    @staticmethod
    def _flow(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        points = cv2.goodFeaturesToTrack(previous, maxCorners=1000, qualityLevel=0.01, minDistance=1, blockSize=3)
        if points is None or len(points) < 4:
            return np.eye(2, 3, dtype=np.float32)
        moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, current, points, None)
        ok = status.ravel() == 1
        if ok.sum() < 4:
            return np.eye(2, 3, dtype=np.float32)
        warp, _ = cv2.estimateAffinePartial2D(points[ok], moved[ok], method=cv2.RANSAC)
        return np.eye(2, 3, dtype=np.float32) if warp is None else warp


def warp_states(mean: np.ndarray, cov: np.ndarray, warp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move Kalman states (N,8) xyah+velocities and covariances (N,8,8) by a 2x3 affine warp.

    Centres get the full affine, velocities the linear part; the height scales with the warp's
    scale; the aspect ratio is unchanged by a similarity transform.
    """
    if len(mean) == 0:
        return mean, cov
    linear = warp[:, :2]
    scale = float(np.sqrt(abs(np.linalg.det(linear))))
    transform = np.eye(8)
    transform[0:2, 0:2] = linear
    transform[4:6, 4:6] = linear
    transform[3, 3] = transform[7, 7] = scale
    mean = mean @ transform.T
    mean[:, 0:2] += warp[:, 2]
    cov = transform @ cov @ transform.T
    return mean, cov
