"""Benchmark `DeepSort.update` per frame (one core) and the Kalman choice; writes BENCHMARKS.md#bench_tracker.

    python scripts/bench_tracker.py [--frames 30]

Synthetic walkers: N people moving at constant speed, each with its own unit feature plus noise;
galleries are filled to their budget before timing, so the gallery rows show the steady state.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the goal is stated
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts.bench_report import machine, update_section  # noqa: E402
from trackers import DeepSort, TrackerConfig  # noqa: E402
from trackers.kalman import BoxKalman, measurement_matrix, transition_matrix  # noqa: E402


def walkers(n: int, dim: int | None, frames: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    start = rng.uniform([0, 0], [1800, 900], (n, 2))
    speed = rng.uniform(-3, 3, (n, 2))
    identity = rng.normal(size=(n, dim)).astype(np.float32) if dim else None
    for f in range(frames):
        c = start + f * speed
        xyxy = np.column_stack([c - [20, 50], c + [20, 50]]).astype(np.float32)
        scores = np.full(n, 0.9, np.float32)
        feats = None
        if dim:
            feats = identity + 0.1 * rng.normal(size=identity.shape).astype(np.float32)
            feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        yield xyxy, scores, feats


def time_update(n: int, dim: int | None, memory: str, frames: int) -> float:
    cfg = TrackerConfig(appearance=memory)
    tracker = DeepSort(cfg)
    stream = walkers(n, dim, frames + 5)
    for _ in range(5):  # confirm everyone
        xyxy, scores, feats = next(stream)
        tracker.update(xyxy, scores, features=feats)
    if dim and memory == "gallery":  # steady state: full galleries
        rng = np.random.default_rng(1)
        for track in tracker.tracks:
            for _ in range(cfg.nn_budget):
                v = rng.normal(size=dim).astype(np.float32)
                track.memory.add(v / np.linalg.norm(v))
    times = []
    for xyxy, scores, feats in stream:
        t0 = time.perf_counter()
        tracker.update(xyxy, scores, features=feats)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def time_kalman(n: int, repeats: int = 200) -> tuple[float, float]:
    """ms per frame for predict + update of n tracks: filterpy objects vs the batched filter."""
    from filterpy.kalman import KalmanFilter

    kf = BoxKalman()
    z = np.column_stack([np.linspace(50, 900, n), np.full(n, 300.0), np.full(n, 0.4), np.full(n, 100.0)])
    mean, cov = kf.initiate(z)
    filters = []
    for i in range(n):
        f = KalmanFilter(dim_x=8, dim_z=4)
        f.F, f.H, f.x, f.P = transition_matrix(), measurement_matrix(), mean[i].reshape(8, 1), cov[i]
        filters.append(f)
    t0 = time.perf_counter()
    for _ in range(repeats):
        for i, f in enumerate(filters):
            f.Q = kf.process_noise(f.x.reshape(1, 8))[0]
            f.predict()
            f.R = kf.measurement_noise(f.x.reshape(1, 8))[0]
            f.update(z[i].reshape(4, 1))
    per_object = 1000 * (time.perf_counter() - t0) / repeats
    t0 = time.perf_counter()
    for _ in range(repeats):
        mean, cov = kf.predict(mean, cov)
        mean, cov = kf.update(mean, cov, z)
    batched = 1000 * (time.perf_counter() - t0) / repeats
    return per_object, batched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30, help="timed frames per row (median reported)")
    args = parser.parse_args()
    rows = []
    for n in (10, 50, 200):
        rows.append((n, "none (motion only)", "-", time_update(n, None, "gallery", args.frames)))
        for dim in (512, 2048):
            for memory in ("ema", "gallery"):
                label = "EMA" if memory == "ema" else "gallery (100 per track)"
                rows.append((n, label, dim, time_update(n, dim, memory, args.frames)))
                print(rows[-1], flush=True)
    lines = [f"Tracker `update` per frame, median of {args.frames} frames, one thread "
             f"({machine()}); `python scripts/bench_tracker.py`.", "",
             "| objects | appearance memory | feature dim | ms / frame |", "|---|---|---|---|"]
    lines += [f"| {n} | {label} | {dim} | {ms:.2f} |" for n, label, dim, ms in rows]
    lines += ["", "Kalman filter, predict + update per frame (the design decision):", "",
              "| tracks | filterpy `KalmanFilter` per track (ms) | batched numpy `BoxKalman` (ms) |", "|---|---|---|"]
    for n in (10, 50, 200):
        per_object, batched = time_kalman(n)
        lines.append(f"| {n} | {per_object:.2f} | {batched:.3f} |")
    table = "\n".join(lines)
    print(table)
    update_section("bench_tracker", table)


if __name__ == "__main__":
    main()
