"""Benchmark `mot-reid batch` against the shell loop it replaces: N short clips, YOLOv8n + OSNet x0.25.

Rows (all in one run, same clips, same machine, each a fresh `mot-reid` process as a user would start it):
- a shell loop of `mot-reid track`, one process per clip, so every clip pays process start and model load;
- `mot-reid batch` with the local engine, 1 and 2 workers; with the Ray engine (a local Ray it starts), 1 and 2
  workers; with a GPU, Ray with 1, 2 and 4 workers sharing it (`--gpus-per-worker 1/N`).

Fixed cost = wall time minus tracking time (the tracking seconds each clip reports, divided by the workers that
share them): process start, imports, Ray start, model load, spawning workers. Model load = the detector + embedder
load each batch worker reports in batch.json (once per worker). Writes its section `bench_batch` of BENCHMARKS.md.

    python scripts/bench_batch.py [--clips 6] [--frames 60] [--device cpu] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_report import machine, update_section  # noqa: E402


def cut_clips(video: Path, root: Path, n: int, frames: int) -> list[Path]:
    """`n` consecutive `frames`-frame pieces of `video` as MP4 files."""
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 7.0
    clips = []
    for k in range(n):
        clips.append(root / f"clip{k}.mp4")
        out = None
        for _ in range(frames):
            ok, frame = cap.read()
            if not ok:
                raise SystemExit(f"{video} has fewer than {n * frames} frames; use fewer --clips or --frames")
            out = out or cv2.VideoWriter(str(clips[-1]), cv2.VideoWriter_fourcc(*"mp4v"), fps, frame.shape[1::-1])
            out.write(frame)
        out.release()
    return clips


def mot_reid(*args: str) -> float:
    """Run one `mot-reid` command in a fresh process; its wall seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mot_reid.cli", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def shell_loop(clips: list[Path], out: Path, models: list[str]) -> dict:
    wall, tracking = 0.0, 0.0
    for clip in clips:
        tracks = out / f"{clip.stem}.json"
        wall += mot_reid("track", str(clip), "--out", str(tracks), *models, "--no-progress")
        tracking += json.loads(tracks.read_text())["summary"]["seconds"]
    return {"seconds": wall, "fixed": wall - tracking, "processes": len(clips), "loads": [],
            "loadavg": os.getloadavg()[0]}


def batch(clips: list[Path], out: Path, models: list[str], engine: str, workers: int, gpus: float = 0) -> dict:
    wall = mot_reid("batch", *map(str, clips), "--out-dir", str(out), "--engine", engine, "--workers", str(workers),
                    "--gpus-per-worker", str(gpus), *models, "--no-progress")
    records = json.loads((out / "batch.json").read_text())["inputs"]
    if any(r["status"] != "done" for r in records):
        raise SystemExit(f"batch {engine} x{workers}: not every clip is done; see {out / 'batch.json'}")
    tracking = sum(r["seconds"] for r in records) / workers
    loads = sorted({r["model_load_seconds"] for r in records})  # one value per worker that tracked clips
    return {"seconds": wall, "fixed": wall - tracking, "processes": 1, "loads": loads, "loadavg": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU rows (Ray, 1/2/4 workers per GPU)")
    args = parser.parse_args()
    data = Path(args.data)
    models = ["--detector", str(data / "weights/yolov8n.pt"), "--reid", str(data / "weights/osnet_x0_25_msmt17.pth"),
              "--device", args.device]
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        tmp = Path(tmp)
        clips = cut_clips(data / "mot/PETS09-S2L1/PETS09-S2L1.avi", tmp, args.clips, args.frames)
        runs = [("shell loop of `mot-reid track` (one process per clip)", shell_loop(clips, tmp / "loop", models))]
        gpu = args.device.startswith("cuda")
        # On a GPU: Ray actors sharing it, 1/N of it each; on CPU: both engines with 1 and 2 workers.
        plan = [("ray", w, 1 / w) for w in (1, 2, 4)] if gpu else [(e, w, 0) for e in ("local", "ray") for w in (1, 2)]
        for engine, w, share in plan:
            name = f"batch --engine {engine} --workers {w}" + (f" --gpus-per-worker {share:g}" if gpu else "")
            runs.append((name, batch(clips, tmp / f"{engine}{w}", models, engine, w, share)))
    loop = runs[0][1]["seconds"]
    n = args.clips
    lines = [f"### mot-reid batch: {n} clips of {args.frames} frames (PETS09-S2L1, 768x576), {machine()}, "
             f"device {args.device}", "",
             "YOLOv8n (conf 0.25, imgsz 640) + OSNet x0.25 (MSMT17) + mot-reid tracker; each row is fresh `mot-reid` "
             "processes as a user starts them (the loop: one per clip). Fixed cost = wall time minus tracking time "
             "(each clip's tracking seconds, divided by the workers sharing them): process start, imports, Ray start, "
             "model load, worker spawn; the loop pays it per clip. Model load = detector + embedder load per batch "
             "worker (batch.json). Local workers split the cores' threads; a Ray CPU actor reserves one core and runs "
             f"torch on one thread. The machine is shared with other jobs: load average {load_start:.1f} at the start, "
             "and per row when it ended; rows run one after another, so a change of load favours some of them.", "",
             "| run | inputs | total s | inputs/hour | fixed cost s | model load s per worker | saved vs the loop "
             "| load avg |", "|---|---|---|---|---|---|---|---|"]
    for name, r in runs:
        saved = "-" if r is runs[0][1] else f"{loop - r['seconds']:.1f} s ({100 * (loop - r['seconds']) / loop:.0f}%)"
        fixed = f"{r['fixed']:.1f}" + (f" ({r['processes']} x {r['fixed'] / r['processes']:.1f})"
                                       if r["processes"] > 1 else "")
        loads = ", ".join(f"{x:.2f}" for x in r["loads"]) or "-"
        lines.append(f"| {name} | {n} | {r['seconds']:.1f} | {3600 * n / r['seconds']:.0f} | {fixed} | {loads} | "
                     f"{saved} | {r['loadavg']:.1f} |")
    if not gpu:
        lines.append(f"| GPU: batch --engine ray, 1 / 2 / 4 workers per GPU | {n} | not measured (no GPU lent) | "
                     "- | - | - | - | - |")
    lines += ["", f"Reproduce: `python scripts/bench_batch.py --clips {n} --frames {args.frames}`; GPU rows: "
              f"`python scripts/bench_batch.py --clips {n} --frames {args.frames} --device cuda`"]
    markdown = "\n".join(lines)
    print(markdown)
    update_section("bench_batch", markdown)


if __name__ == "__main__":
    main()
