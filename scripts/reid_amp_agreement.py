"""Do mixed-precision and fp32 training of the ReID recipe agree? Trains the same recipe on the mot2reid set
three times and writes the comparison into BENCHMARKS.md (section `reid_amp_agreement`):

    fp32, seed s      the reference
    AMP,  seed s      same seed, hence the same initial weights and the same batches: differences come from precision
    fp32, seed s+1    the noise level: how far two fp32 runs that differ only in seed drift apart

Per-epoch losses (total, ID, triplet) of the three runs side by side, the largest relative loss difference
fp32-vs-AMP and fp32-vs-other-seed, and the final rank-1 / mAP of each. Evaluation is in fp32 for all three
(only training precision differs). The recipe is shrunk to CPU size by default with the same overrides as
scripts/reid_ablation.py (random init, small input, the schedule's shape kept).

    python scripts/reid_amp_agreement.py                       # CPU here: resnet18 64x32, 6 epochs, bf16 autocast
    python scripts/reid_amp_agreement.py --epochs 6 --gallery-step 4 --no-write
    # on one GPU (e.g. an H100), the issue's check at full size:
    python scripts/reid_amp_agreement.py --device cuda --amp bf16 --backbone resnet50 --size 256 128 --epochs 10
    python scripts/reid_amp_agreement.py --device cuda --amp fp16 --backbone resnet50 --size 256 128 --epochs 10
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import machine, update_section  # noqa: E402
from reid_ablation import cpu_overrides, make_mot2reid  # noqa: E402

from mot_reid import config  # noqa: E402
from mot_reid.device import resolve_device  # noqa: E402
from mot_reid.log import setup_logging  # noqa: E402
from mot_reid.reid.datasets import load_dataset  # noqa: E402
from mot_reid.reid.recipe import ReIDRecipe  # noqa: E402
from mot_reid.reid.train import CHECKPOINT, train  # noqa: E402

PARTS = ("loss", "id", "triplet")  # total, and the two parts large enough to compare (center is x5e-4)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return f"{device.type}: {machine()} (torch {torch.__version__}, {torch.get_num_threads()} threads)"


def train_one(args, recipe_path: Path, name: str, seed: int, amp: str, dataset) -> dict:
    """One training run of the shrunk recipe; returns its per-epoch history, final evaluation and seconds."""
    base = config.load(ReIDRecipe, recipe_path)
    overrides = [*cpu_overrides(base, args), f"runtime.device={args.device}", f"runtime.amp={amp}",
                 f"solver.seed={seed}"]  # after cpu_overrides: these win over its runtime.device=cpu
    recipe = config.load(ReIDRecipe, recipe_path, overrides)
    out = Path(args.output) / name
    if (out / CHECKPOINT).exists():
        (out / CHECKPOINT).unlink()  # a re-run replaces the previous one
    started = time.perf_counter()
    history = train(recipe, None, out, dataset=dataset)
    final = history["evals"][-1]
    print(f"{name}: rank-1 {100 * final['rank1']:.1f} mAP {100 * final['mAP']:.1f}", flush=True)
    return {"name": name, "epochs": history["epochs"], "final": final, "seconds": time.perf_counter() - started}


def max_rel_diff(a: dict, b: dict) -> tuple[float, str]:
    """Largest |a - b| / |b| over epochs and loss parts, and where it happened."""
    worst, where = 0.0, "-"
    for ea, eb in zip(a["epochs"], b["epochs"], strict=True):
        for part in PARTS:
            if part in ea and part in eb:
                rel = abs(ea[part] - eb[part]) / max(abs(eb[part]), 1e-12)
                if rel > worst:
                    worst, where = rel, f"{part}, epoch {eb['epoch']}"
    return worst, where


def mean_rel_diff(a: dict, b: dict) -> float:
    """Mean |a - b| / |b| over epochs and loss parts."""
    rels = [abs(ea[p] - eb[p]) / max(abs(eb[p]), 1e-12) for ea, eb in zip(a["epochs"], b["epochs"], strict=True)
            for p in PARTS if p in ea and p in eb]
    return sum(rels) / max(len(rels), 1)


def fmt_losses(epoch: dict) -> str:
    return f"{epoch['loss']:.4f} ({epoch.get('id', float('nan')):.3f} / {epoch.get('triplet', float('nan')):.3f})"


def report(args, dataset, device: torch.device, runs: list[dict]) -> None:
    ref, amp, other = runs
    amp_rel, amp_where = max_rel_diff(amp, ref)
    seed_rel, seed_where = max_rel_diff(other, ref)
    label = args.amp if device.type == "cuda" else f"CPU {args.amp}"
    lines = [
        f"### fp32 vs {args.amp} autocast training agreement on the mot2reid set ({device_name(device)})",
        "",
        ("**A CPU measurement** (bf16 autocast on the CPU), not the issue's GPU check; the GPU command is below."
         if device.type != "cuda" else "Measured on a GPU."),
        f"Recipe `{Path(args.recipe).stem}` shrunk to {args.backbone} from random init, {args.size[0]}x{args.size[1]} "
        f"input, {args.epochs} epochs (warmup and milestones scaled from 120), PK {args.p}x{args.k}. "
        f"Data: {dataset.summary().split(': ', 1)[1]}"
        + (f" (the gallery is every {args.gallery_step}th image)." if args.gallery_step > 1 else ".")
        + f" Runs: fp32 seed {args.seed}; {args.amp} autocast seed {args.seed} (same initial weights and batches; "
        f"losses in fp32); fp32 seed {args.seed + 1} (the seed-to-seed noise reference). Evaluation in fp32.",
        "",
        f"| epoch | fp32 seed {args.seed}: loss (id / triplet) | {label} seed {args.seed} | "
        f"fp32 seed {args.seed + 1} | max rel. diff {args.amp} vs fp32 | max rel. diff seed vs seed |",
        "|---|---|---|---|---|---|",
    ]
    for er, ea, eo in zip(ref["epochs"], amp["epochs"], other["epochs"], strict=True):
        rel_a = max(abs(ea[p] - er[p]) / max(abs(er[p]), 1e-12) for p in PARTS if p in er)
        rel_o = max(abs(eo[p] - er[p]) / max(abs(er[p]), 1e-12) for p in PARTS if p in er)
        lines.append(f"| {er['epoch']} | {fmt_losses(er)} | {fmt_losses(ea)} | {fmt_losses(eo)} | "
                     f"{100 * rel_a:.2f}% | {100 * rel_o:.2f}% |")
    lines += ["", "| run | rank-1 % | mAP % | train images/s (mean) | train+eval s |", "|---|---|---|---|---|"]
    for run, run_label in zip(runs, [f"fp32 seed {args.seed}", f"{label} seed {args.seed}",
                                     f"fp32 seed {args.seed + 1}"], strict=True):
        speed = sum(e["images_per_s"] for e in run["epochs"]) / len(run["epochs"])
        lines.append(f"| {run_label} | {100 * run['final']['rank1']:.1f} | {100 * run['final']['mAP']:.1f} | "
                     f"{speed:.0f} | {run['seconds']:.0f} |")
    d_amp = (abs(amp["final"]["rank1"] - ref["final"]["rank1"]), abs(amp["final"]["mAP"] - ref["final"]["mAP"]))
    d_seed = (abs(other["final"]["rank1"] - ref["final"]["rank1"]), abs(other["final"]["mAP"] - ref["final"]["mAP"]))
    amp_mean, seed_mean = mean_rel_diff(amp, ref), mean_rel_diff(other, ref)
    worse = [what for what, ok in (("the mean loss difference", amp_mean <= seed_mean),
                                   ("the largest loss difference", amp_rel <= seed_rel),
                                   ("rank-1", d_amp[0] <= d_seed[0]), ("mAP", d_amp[1] <= d_seed[1])) if not ok]
    verdict = ("within the seed-to-seed noise" if not worse
               else f"larger than this one seed-to-seed difference in {', '.join(worse)}")
    lines += ["", f"Reading: relative loss difference {args.amp} vs fp32 {100 * amp_mean:.2f}% on average over epochs "
              f"and parts, at most {100 * amp_rel:.2f}% ({amp_where}); fp32 seed vs seed {100 * seed_mean:.2f}% on "
              f"average, at most {100 * seed_rel:.2f}% ({seed_where}). Final rank-1 / mAP differ by "
              f"{100 * d_amp[0]:.1f} / {100 * d_amp[1]:.1f} points ({args.amp} vs fp32) and "
              f"{100 * d_seed[0]:.1f} / {100 * d_seed[1]:.1f} points (seed vs seed): the {args.amp} differences are "
              f"{verdict}. With {len(dataset.query)} query images one query is "
              f"{100 / max(len(dataset.query), 1):.1f} rank-1 points, and the seed reference changes the initial "
              f"weights and the batches too, so it is one sample of the noise, not a bound."]
    lines += ["", "Reproduce: `python scripts/reid_amp_agreement.py " + " ".join(
        [f"--device {args.device}", f"--amp {args.amp}", f"--backbone {args.backbone}",
         f"--size {args.size[0]} {args.size[1]}", f"--epochs {args.epochs}", f"--seed {args.seed}",
         f"--gallery-step {args.gallery_step}"]) + "`"]
    if device.type != "cuda":
        lines += ["", "On a GPU: `python scripts/reid_amp_agreement.py --device cuda --amp bf16 --backbone resnet50 "
                  "--size 256 128 --epochs 10` (and `--amp fp16` for the GradScaler path)."]
        load, cores = os.getloadavg()[1], os.cpu_count() or 1
        lines.append(f"\nLoad average (5 min) when written: {load:.1f} on {cores} cores"
                     + (": other jobs shared the machine, so speeds are low." if load > min(cores, 2) + 0.5 else "."))
    table = "\n".join(lines)
    if not args.no_write:
        update_section("reid_amp_agreement", table)
    print(table, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a mot2reid folder (default: build one from ../shared/data/mot)")
    parser.add_argument("--output", default="runs/reid_amp_agreement", help="where the three runs go")
    parser.add_argument("--recipe", default="softmax_triplet_with_center", help="a shipped reid recipe or a YAML path")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--amp", default="bf16", choices=("bf16", "fp16"),
                        help="the mixed-precision run's autocast dtype (fp16 uses a GradScaler; meant for CUDA)")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", nargs=2, type=int, default=[64, 32], metavar=("H", "W"))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--p", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="fp32 and AMP use it; the noise reference uses seed+1")
    parser.add_argument("--gallery-step", type=int, default=1,
                        help="evaluate on every n-th gallery image (all queries) to save time (default 1: all)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    setup_logging()

    device = resolve_device(args.device)
    recipe_path = config.resolve_config_path(args.recipe, "reid")
    data = Path(args.data) if args.data else make_mot2reid(Path(tempfile.mkdtemp(prefix="mot2reid-")) / "mot2reid")
    dataset = load_dataset(data, "mot2reid")
    dataset = dataclasses.replace(dataset, gallery=dataset.gallery[::args.gallery_step])
    print(dataset.summary(), flush=True)

    runs = [train_one(args, recipe_path, f"fp32_seed{args.seed}", args.seed, "off", dataset),
            train_one(args, recipe_path, f"{args.amp}_seed{args.seed}", args.seed, args.amp, dataset),
            train_one(args, recipe_path, f"fp32_seed{args.seed + 1}", args.seed + 1, "off", dataset)]
    report(args, dataset, device, runs)


if __name__ == "__main__":
    main()
