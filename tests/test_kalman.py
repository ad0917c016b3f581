"""The batched Kalman filter against hand-computed values, filterpy step by step, and a direct Mahalanobis."""

from __future__ import annotations

import numpy as np
from filterpy.kalman import KalmanFilter

from trackers.distances import gate
from trackers.kalman import BoxKalman, measurement_matrix, transition_matrix


def test_initiate_predict_update_by_hand():
    kf = BoxKalman(1 / 20, 1 / 160)
    mean, cov = kf.initiate(np.array([[100.0, 50.0, 0.5, 80.0]]))
    assert np.allclose(mean, [[100, 50, 0.5, 80, 0, 0, 0, 0]])
    # std = 2 * 80 / 20 = 8 for positions, 10 * 80 / 160 = 5 for velocities.
    assert np.allclose(np.diag(cov[0]), [64, 64, 1e-4, 64, 25, 25, 1e-10, 25])
    mean, cov = kf.predict(mean, cov)
    assert np.allclose(mean, [[100, 50, 0.5, 80, 0, 0, 0, 0]])  # zero velocity: no move
    # P_xx = 64 + 25 (velocity carried in) + (80/20)^2 = 105; cross term P_xv = 25.
    assert np.isclose(cov[0, 0, 0], 105.0) and np.isclose(cov[0, 0, 4], 25.0)
    assert np.isclose(cov[0, 4, 4], 25.0 + 0.5**2)
    z = np.array([[110.0, 50.0, 0.5, 80.0]])
    new_mean, new_cov = kf.update(mean, cov, z)
    # x gain = P_xx / (P_xx + R_xx) with R_xx = (80/20)^2 = 16.
    gain = 105.0 / (105.0 + 16.0)
    assert np.isclose(new_mean[0, 0], 100 + gain * 10)
    assert np.isclose(new_mean[0, 4], 25.0 / 121.0 * 10)  # velocity learns through the cross term
    assert np.isclose(new_cov[0, 0, 0], 105.0 * 16.0 / 121.0)


def test_equal_to_filterpy_step_by_step():
    rng = np.random.default_rng(0)
    kf = BoxKalman()
    n = 5
    z0 = np.column_stack([rng.uniform(50, 500, n), rng.uniform(50, 400, n), rng.uniform(0.3, 0.6, n),
                          rng.uniform(40, 200, n)])
    mean, cov = kf.initiate(z0)
    refs = []
    for i in range(n):
        ref = KalmanFilter(dim_x=8, dim_z=4)
        ref.F, ref.H = transition_matrix(), measurement_matrix()
        ref.x, ref.P = mean[i].copy().reshape(8, 1), cov[i].copy()
        refs.append(ref)
    for step in range(20):
        for ref in refs:
            ref.Q = kf.process_noise(ref.x.reshape(1, 8))[0]
            ref.predict()
        mean, cov = kf.predict(mean, cov)
        z = mean[:, :4] + rng.normal(0, 2, (n, 4)) * [1, 1, 0.01, 1]
        conf = rng.uniform(0.3, 0.99, n) if step % 2 else None
        for i, ref in enumerate(refs):
            ref.R = kf.measurement_noise(ref.x.reshape(1, 8), None if conf is None else conf[i:i + 1])[0]
            ref.update(z[i].reshape(4, 1))
        mean, cov = kf.update(mean, cov, z, conf)
        for i, ref in enumerate(refs):
            assert np.allclose(mean[i], ref.x.ravel(), rtol=1e-9, atol=1e-9)
            assert np.allclose(cov[i], ref.P, rtol=1e-7, atol=1e-9)


def test_gating_distance_matches_direct_mahalanobis():
    rng = np.random.default_rng(1)
    kf = BoxKalman()
    mean, cov = kf.initiate(np.array([[100.0, 100, 0.5, 100], [300, 200, 0.4, 60]]))
    mean, cov = kf.predict(mean, cov)
    z = np.column_stack([rng.uniform(80, 320, 6), rng.uniform(80, 220, 6), rng.uniform(0.3, 0.6, 6),
                         rng.uniform(50, 120, 6)])
    got = kf.gating_distance(mean, cov, z)
    for t in range(2):
        s = cov[t, :4, :4] + kf.measurement_noise(mean[t:t + 1])[0]
        for m in range(6):
            d = z[m] - mean[t, :4]
            assert np.isclose(got[t, m], d @ np.linalg.inv(s) @ d)
    gated = gate(np.zeros_like(got), got, 9.4877)
    assert ((gated >= 1e5) == (got > 9.4877)).all()
