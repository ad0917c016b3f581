"""ReID benchmarks: training throughput, and evaluation / re-ranking time and peak memory on random
Market-1501-sized features. Writes BENCHMARKS.md sections `bench_reid` (training) and
`bench_reid_eval` (evaluation).

Training (`--part train`): `mot_reid.reid.train.train_step` (forward, ID + triplet + center loss,
backward, Adam and center-SGD steps), the reference recipe (BNNeck, last stride 1) from random init,
on `--data fixed` (one random batch already on the device: the model's speed alone) and/or
`--data cache` (the GPU data path: a uint8 image cache on the device, PK sampling, augmentation
batched on the device), for each `--amp` precision.

Evaluation (`--part eval`): Market-1501's test split, 3368 queries x 15913 gallery, 2048-D (ResNet50)
features, 750 test ids, 6 cameras: distance matrix + CMC/mAP/mINP, then k-reciprocal re-ranking
(k1 20, k2 6, lambda 0.3) + CMC/mAP/mINP. Random features are a best case for re-ranking
(k-reciprocal sets of random high-dimensional points are small, so its sparse encoding is sparser
than on real features): treat the re-ranking time as a lower bound.

Every measurement runs in its own child process, so its peak memory (max RSS on CPU, peak
allocated on CUDA) is its own. Devices: the CPU, plus the GPU whenever CUDA is available.

    python scripts/bench_reid.py                               # both parts, cpu (+ cuda when present)
    python scripts/bench_reid.py --part train --iters 3 --warmup 1 --amp off bf16
    python scripts/bench_reid.py --part eval --devices cuda --skip-rerank
    python scripts/bench_reid.py --devices cuda --iters 50 --warmup 10 --amp off bf16 fp16   # an H100
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import machine, update_section  # noqa: E402

from mot_reid.device import resolve_device  # noqa: E402
from mot_reid.reid.device_data import BatchAugment, DeviceTrainData, ImageCache  # noqa: E402
from mot_reid.reid.losses import ReIDLoss  # noqa: E402
from mot_reid.reid.metrics import compute_distance, evaluate_ranking, re_ranking  # noqa: E402
from mot_reid.reid.model import build_model  # noqa: E402
from mot_reid.reid.precision import amp_dtype  # noqa: E402
from mot_reid.reid.recipe import ReIDRecipe  # noqa: E402
from mot_reid.reid.sampler import PKSampler  # noqa: E402
from mot_reid.reid.train import (  # noqa: E402
    build_optimizer,
    channels_last,
    prepare_network,
    train_step,
)

NUM_TRAIN_IDS, NUM_TEST_IDS, NUM_CAMS = 751, 750, 6  # Market-1501


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


# ---------------------------------------------------------------- training

def cached_batches(device: torch.device, size: tuple[int, int], p: int, k: int, num_images: int, recipe):
    """Endless batches from the training data path a GPU run uses: a uint8 image cache (random pixels,
    Market-1501's 751 identities) on the device, PK sampling and batched on-device augmentation."""
    gen = torch.Generator().manual_seed(0)
    pids = torch.randint(0, NUM_TRAIN_IDS, (num_images,), generator=gen).tolist()
    images = torch.randint(0, 256, (num_images, 3, *size), dtype=torch.uint8, generator=gen)
    recipe.input.size = size
    recipe.data.ids_per_batch, recipe.data.images_per_id = p, k
    data = DeviceTrainData(ImageCache(images.to(device), device), pids, PKSampler(pids, p, k),
                           BatchAugment(recipe.input, device, channels_last=channels_last(recipe.runtime, device)))

    def endless():  # built above, before any step is timed
        epoch = 0
        while True:
            data.set_epoch(epoch)
            yield from data
            epoch += 1

    return endless()


def train_throughput(backbone: str, device: torch.device, size: tuple[int, int], p: int, k: int,
                     iters: int, warmup: int, amp: str, data: str, cache_images: int) -> dict:
    """Images per second over `iters` timed steps after `warmup` untimed ones. data: `fixed` = one
    random batch already on the device (the model alone); `cache` = batches from the on-device data path."""
    recipe = ReIDRecipe()
    recipe.runtime.amp = amp
    recipe.model.backbone, recipe.model.pretrained = backbone, "none"
    torch.manual_seed(0)
    model = build_model(recipe.model, NUM_TRAIN_IDS).to(device).train()
    criterion = ReIDLoss(recipe.loss, NUM_TRAIN_IDS, model.feat_dim).to(device)
    optimizer = build_optimizer(model, recipe.solver)
    center_opt = torch.optim.SGD(criterion.center.parameters(), lr=recipe.loss.center_lr)
    autocast = amp_dtype(recipe.runtime.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast == torch.float16)
    net = prepare_network(model, recipe.runtime, device)
    fmt = torch.channels_last if channels_last(recipe.runtime, device) else torch.contiguous_format
    if data == "cache":
        batches = cached_batches(device, size, p, k, cache_images, recipe)
    else:
        fixed = (torch.randn(p * k, 3, *size, device=device).contiguous(memory_format=fmt),
                 torch.arange(p, device=device).repeat_interleave(k) * (NUM_TRAIN_IDS // p))
        batches = iter(lambda: fixed, None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    for _ in range(warmup):
        train_step(net, criterion, optimizer, center_opt, scaler, *next(batches), autocast)
    sync(device)
    started = time.perf_counter()
    for _ in range(iters):
        parts = train_step(net, criterion, optimizer, center_opt, scaler, *next(batches), autocast)
    parts["loss"].item()
    sync(device)
    ips = iters * p * k / (time.perf_counter() - started)
    precision = str(autocast).replace("torch.", "") if autocast else "fp32"
    return {"images_per_s": ips, "precision": precision, "peak_bytes": peak_bytes(device)}


# ---------------------------------------------------------------- evaluation

def features(num_q: int, num_g: int, dim: int, device: torch.device, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    q_pids = torch.randint(0, NUM_TEST_IDS, (num_q,), generator=gen)
    g_pids = torch.randint(0, NUM_TEST_IDS, (num_g,), generator=gen)
    q_cams = torch.randint(0, NUM_CAMS, (num_q,), generator=gen)
    g_cams = torch.randint(0, NUM_CAMS, (num_g,), generator=gen)
    # Noise 4x the identity signal per dimension: mAP lands near real values instead of 1.0.
    centers = torch.randn(NUM_TEST_IDS, dim, generator=gen)
    qf = centers[q_pids] + 4.0 * torch.randn(num_q, dim, generator=gen)
    gf = centers[g_pids] + 4.0 * torch.randn(num_g, dim, generator=gen)
    qf = torch.nn.functional.normalize(qf, dim=1).to(device)
    gf = torch.nn.functional.normalize(gf, dim=1).to(device)
    return qf, gf, q_pids, g_pids, q_cams, g_cams


def run_eval_step(step: str, qf, gf, q_pids, g_pids, q_cams, g_cams) -> dict:
    if step == "eval":
        return evaluate_ranking(compute_distance(qf, gf), q_pids, g_pids, q_cams, g_cams)
    return evaluate_ranking(re_ranking(qf, gf, k1=20, k2=6, lambda_value=0.3), q_pids, g_pids, q_cams, g_cams)


def eval_time(step: str, device: torch.device, num_q: int, num_g: int, dim: int) -> dict:
    """Seconds for `eval` (distance + ranking metrics) or `rerank` (re-ranking + ranking metrics)."""
    # Warm up on a small problem first: CUDA's lazy kernel loading and library handles are one-off costs.
    run_eval_step(step, *features(64, 256, dim, device, seed=1))
    qf, gf, q_pids, g_pids, q_cams, g_cams = features(num_q, num_g, dim, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0 = time.perf_counter()
    extra = {}
    if step == "eval":
        dist = compute_distance(qf, gf)
        sync(device)
        extra["distance_s"] = time.perf_counter() - t0
    else:
        dist = re_ranking(qf, gf, k1=20, k2=6, lambda_value=0.3)
    metrics = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams)
    sync(device)
    return {"seconds": time.perf_counter() - t0, "peak_bytes": peak_bytes(device), "mAP": metrics["mAP"], **extra}


# ---------------------------------------------------------------- driver

def child(job: dict, args) -> dict:
    """Run one measurement in a fresh process (its own peak memory); returns its JSON result."""
    cmd = [sys.executable, __file__, "--child", json.dumps(job), "--size", *map(str, args.size),
           "--p", str(args.p), "--k", str(args.k), "--iters", str(args.iters), "--warmup", str(args.warmup),
           "--cache-images", str(args.cache_images), "--queries", str(args.queries), "--gallery", str(args.gallery),
           "--dim", str(args.dim)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result = {**job, **json.loads(out.strip().splitlines()[-1])}
    print(json.dumps(result), flush=True)
    return result


def run_child(job: dict, args) -> dict:
    device = resolve_device(job["device"])
    if job["kind"] == "train":
        return train_throughput(job["backbone"], device, tuple(args.size), args.p, args.k, args.iters,
                                args.warmup, job["amp"], job["data"], args.cache_images)
    return eval_time(job["step"], device, args.queries, args.gallery, args.dim)


def where(device: str) -> str:
    return (f"cuda: {torch.cuda.get_device_name(resolve_device(device))}" if device.startswith("cuda")
            else f"cpu: {machine()}")


def command() -> str:
    """This run's command line, for the Reproduce lines."""
    return " ".join(["python scripts/bench_reid.py", *(a for a in sys.argv[1:] if a != "--no-write")])


START_LOAD = os.getloadavg()[0]  # other jobs' load, sampled before this script's own work


def load_note() -> str:
    note = f"Load average (1 min) from other jobs before the run: {START_LOAD:.1f} on {os.cpu_count()} cores"
    return note + (": they shared the CPU, so CPU figures are low." if START_LOAD > 0.5 else ".")


def train_table(results: list[dict], args) -> str:
    data_names = {"fixed": "fixed batch on the device", "cache": "uint8 cache + on-device augmentation"}
    data_text = {"fixed": "a fixed batch already on the device (the model alone)",
                 "cache": f"the GPU data path: a uint8 cache of {args.cache_images} random images on the device, "
                          "PK sampling, flip + pad/crop + normalise + random erasing batched on the device "
                          "(decoding is once, before)"}
    rows = [f"| {r['device_name']} | {r['backbone']} | {args.size[0]}x{args.size[1]} | {args.p}x{args.k} | "
            f"{r['precision']} | {data_names[r['data']]} | {r['images_per_s']:.1f} | {r['peak_bytes'] / 2**30:.2f} |"
            for r in results]
    return "\n".join([
        f"### ReID training throughput (torch {torch.__version__}, {torch.get_num_threads()} CPU threads)",
        "",
        "One full training step (forward, ID + triplet + center loss, backward, Adam + center SGD), "
        "BNNeck / last stride 1, random init. Data: "
        + " or ".join(data_text[d] for d in args.data) + ". "
        f"{args.iters} timed steps after {args.warmup} warm-up step(s); shared machines vary by up to 2x. "
        "Peak memory: max RSS of the measuring process on CPU (runtime and cache included), peak allocated on CUDA.",
        "",
        "| device | backbone | input | batch (PxK) | precision | data | images/s | peak memory (GiB) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        load_note(),
        "",
        f"Reproduce: `{command()}`",
    ])


def eval_table(results: list[dict], args) -> str:
    names = {"eval": "distance matrix + CMC/mAP/mINP",
             "rerank": "k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3) + CMC/mAP/mINP"}
    rows = [f"| {r['device_name']} | {names[r['step']]} | {r['seconds']:.1f} | {r['peak_bytes'] / 2**30:.2f} |"
            for r in results]
    dist = "; ".join(f"{r['device']} {r['distance_s']:.2f} s" for r in results if "distance_s" in r)
    inputs = (args.queries + args.gallery) * args.dim * 4 / 2**30
    market = "Market-1501 size; " if (args.queries, args.gallery, args.dim) == (3368, 15913, 2048) else ""
    return "\n".join([
        f"### ReID evaluation on random features: {args.queries} queries x {args.gallery} gallery, {args.dim}-D "
        f"({market}torch {torch.__version__}, {torch.get_num_threads()} CPU threads)",
        "",
        "| device | step | time (s) | peak memory (GiB) |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Distance matrix alone: {dist}. Peak memory: max RSS of the measuring process on CPU (includes the "
        f"{inputs:.2f} GiB of input features and the Python/torch runtime), peak allocated on CUDA. "
        "Random features make re-ranking's sparse encoding sparser than real ones: a lower bound. " + load_note(),
        "",
        f"Reproduce: `{command()}`",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["train", "eval", "all"], default="all")
    default_devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    parser.add_argument("--devices", nargs="+", default=default_devices,
                        help="default: cpu, plus cuda when available")
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--size", nargs=2, type=int, default=[256, 128], metavar=("H", "W"))
    parser.add_argument("--p", type=int, default=16, help="identities per batch")
    parser.add_argument("--k", type=int, default=4, help="images per identity")
    parser.add_argument("--iters", type=int, default=3, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps first")
    parser.add_argument("--amp", nargs="+", default=["auto"], choices=["auto", "off", "bf16", "fp16"],
                        help="training precision(s), one row each (auto: bf16 on CUDA with bf16 support, else fp32)")
    parser.add_argument("--data", nargs="+", default=["fixed", "cache"], choices=["fixed", "cache"],
                        help="training batches: fixed (the model alone) and/or cache (the on-device data path)")
    parser.add_argument("--cache-images", type=int, default=12936, help="images in the cache (Market-1501: 12936)")
    parser.add_argument("--queries", type=int, default=3368)
    parser.add_argument("--gallery", type=int, default=15913)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--skip-rerank", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one measurement, in a child process
    args = parser.parse_args()

    if args.child:
        print(json.dumps(run_child(json.loads(args.child), args)))
        return

    if args.part in ("train", "all"):
        results = [{**child({"kind": "train", "device": d, "backbone": b, "amp": a, "data": data}, args),
                    "device_name": where(d)}
                   for d in args.devices for b in args.backbones for a in args.amp for data in args.data]
        table = train_table(results, args)
        if not args.no_write:
            update_section("bench_reid", table)
        print(table, flush=True)
    if args.part in ("eval", "all"):
        steps = ["eval"] + ([] if args.skip_rerank else ["rerank"])
        results = [{**child({"kind": "eval", "device": d, "step": s}, args), "device_name": where(d)}
                   for d in args.devices for s in steps]
        table = eval_table(results, args)
        if not args.no_write:
            update_section("bench_reid_eval", table)
        print(table, flush=True)


if __name__ == "__main__":
    main()
