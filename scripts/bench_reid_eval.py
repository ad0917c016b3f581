"""Benchmark ReID evaluation and k-reciprocal re-ranking on random Market-1501-sized features.

Market-1501 test split: 3368 queries x 15913 gallery, 2048-D (ResNet50) features, 750 test ids,
6 cameras. Each part runs in its own child process so its peak memory (max RSS on CPU, peak
allocated on CUDA) is its own. Writes the `bench_reid_eval` section of BENCHMARKS.md.

    python scripts/bench_reid_eval.py [--device cpu|cuda] [--queries 3368 --gallery 15913 --dim 2048]
                                      [--skip-rerank] [--no-write]

Random features are a worst case for nothing and a best case for re-ranking (k-reciprocal sets
of random high-dimensional points are small, so its sparse encoding is sparser than on real
features): treat the re-ranking time as a lower bound.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from mot_reid.reid.metrics import compute_distance, evaluate_ranking, re_ranking


def features(num_q, num_g, dim, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    num_ids = 750
    q_pids = torch.randint(0, num_ids, (num_q,), generator=gen)
    g_pids = torch.randint(0, num_ids, (num_g,), generator=gen)
    q_cams = torch.randint(0, 6, (num_q,), generator=gen)
    g_cams = torch.randint(0, 6, (num_g,), generator=gen)
    # Noise 4x the identity signal per dimension: mAP lands near real values instead of 1.0.
    centers = torch.randn(num_ids, dim, generator=gen)
    qf = centers[q_pids] + 4.0 * torch.randn(num_q, dim, generator=gen)
    gf = centers[g_pids] + 4.0 * torch.randn(num_g, dim, generator=gen)
    qf = torch.nn.functional.normalize(qf, dim=1).to(device)
    gf = torch.nn.functional.normalize(gf, dim=1).to(device)
    return qf, gf, q_pids, g_pids, q_cams, g_cams


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_part(part: str, args) -> dict:
    device = torch.device(args.device)
    qf, gf, q_pids, g_pids, q_cams, g_cams = features(args.queries, args.gallery, args.dim, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0 = time.perf_counter()
    if part == "eval":
        dist = compute_distance(qf, gf)
        sync(device)
        t_dist = time.perf_counter() - t0
        metrics = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams)
        extra = {"distance_s": t_dist, "mAP": metrics["mAP"], "rank1": metrics["rank1"]}
    else:
        dist = re_ranking(qf, gf, k1=20, k2=6, lambda_value=0.3)
        metrics = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams)
        extra = {"mAP": metrics["mAP"], "rank1": metrics["rank1"]}
    sync(device)
    seconds = time.perf_counter() - t0
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"part": part, "seconds": seconds, "peak_bytes": peak, **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--queries", type=int, default=3368)
    parser.add_argument("--gallery", type=int, default=15913)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--skip-rerank", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--part", choices=["eval", "rerank"], help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()

    if args.part:
        print(json.dumps(run_part(args.part, args)))
        return

    results = []
    for part in ["eval"] + ([] if args.skip_rerank else ["rerank"]):
        cmd = [sys.executable, __file__, "--part", part, "--device", args.device, "--queries", str(args.queries),
               "--gallery", str(args.gallery), "--dim", str(args.dim)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(results[-1]))

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    from bench_report import machine, update_section

    where = machine() if args.device == "cpu" else torch.cuda.get_device_name(torch.device(args.device))
    memory = "peak RSS of the process" if args.device == "cpu" else "peak CUDA memory allocated"
    lines = [
        f"ReID evaluation on random features: {args.queries} queries x {args.gallery} gallery, {args.dim}-D "
        f"(Market-1501 size), device `{args.device}` ({where}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads. `python scripts/bench_reid_eval.py --device {args.device}`",
        "",
        f"| step | time (s) | {memory} (GiB) |",
        "|---|---|---|",
    ]
    for r in results:
        name = ("distance matrix + CMC/mAP/mINP" if r["part"] == "eval"
                else "k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3) + CMC/mAP/mINP")
        lines.append(f"| {name} | {r['seconds']:.1f} | {r['peak_bytes'] / 2**30:.2f} |")
    ev = results[0]
    lines += ["", f"Distance matrix alone: {ev['distance_s']:.1f} s. Peak memory includes the input features "
              f"({(args.queries + args.gallery) * args.dim * 4 / 2**30:.2f} GiB) and the Python/torch runtime."]
    if not args.no_write:
        update_section("bench_reid_eval", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
