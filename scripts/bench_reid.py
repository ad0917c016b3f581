"""ReID training throughput (images/s) of the real training step, written to BENCHMARKS.md (`bench_reid`).

Measures `mot_reid.reid.train.train_step` (forward, ID + triplet + center loss, backward, Adam and
center-SGD steps) on random PK batches already on the device, so the figure is the model's
training speed without image decoding. The recipe is the reference one (BNNeck, last stride 1)
from random init.

    python scripts/bench_reid.py                         # CPU, ResNet18 and ResNet50 at 256x128
    python scripts/bench_reid.py --device cuda --iters 50 --warmup 10
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import machine, update_section  # noqa: E402

from mot_reid.reid.losses import ReIDLoss  # noqa: E402
from mot_reid.reid.model import build_model  # noqa: E402
from mot_reid.reid.recipe import ReIDRecipe  # noqa: E402
from mot_reid.reid.train import (  # noqa: E402
    amp_dtype,
    build_optimizer,
    channels_last,
    prepare_network,
    resolve_device,
    train_step,
)


def train_throughput(backbone: str, device: torch.device, size: tuple[int, int], p: int, k: int,
                     iters: int, warmup: int, recipe: ReIDRecipe) -> float:
    """Images per second over `iters` timed steps after `warmup` untimed ones."""
    recipe.model.backbone, recipe.model.pretrained = backbone, "none"
    num_classes = 751  # Market-1501's training identities
    torch.manual_seed(0)
    model = build_model(recipe.model, num_classes).to(device).train()
    criterion = ReIDLoss(recipe.loss, num_classes, model.feat_dim).to(device)
    optimizer = build_optimizer(model, recipe.solver)
    center_opt = torch.optim.SGD(criterion.center.parameters(), lr=recipe.loss.center_lr)
    autocast = amp_dtype(recipe.runtime, device)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast == torch.float16)
    net = prepare_network(model, recipe.runtime, device)
    fmt = torch.channels_last if channels_last(recipe.runtime, device) else torch.contiguous_format
    images = torch.randn(p * k, 3, *size, device=device).contiguous(memory_format=fmt)
    pids = torch.arange(p, device=device).repeat_interleave(k) * (num_classes // p)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        train_step(net, criterion, optimizer, center_opt, scaler, images, pids, autocast)
    sync()
    started = time.perf_counter()
    for _ in range(iters):
        parts = train_step(net, criterion, optimizer, center_opt, scaler, images, pids, autocast)
    parts["loss"].item()
    sync()
    return iters * p * k / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", nargs=2, type=int, default=[256, 128], metavar=("H", "W"))
    parser.add_argument("--p", type=int, default=16, help="identities per batch")
    parser.add_argument("--k", type=int, default=4, help="images per identity")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"])
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()

    device = resolve_device(args.device)
    recipe = ReIDRecipe()
    recipe.runtime.amp = args.amp
    host = torch.cuda.get_device_name(device) if device.type == "cuda" else machine()
    precision = amp_dtype(recipe.runtime, device)
    rows = []
    for backbone in args.backbones:
        ips = train_throughput(backbone, device, tuple(args.size), args.p, args.k, args.iters, args.warmup, recipe)
        print(f"{backbone}: {ips:.1f} images/s", flush=True)
        rows.append(f"| {backbone} | {args.size[0]}x{args.size[1]} | {args.p}x{args.k} | "
                    f"{str(precision).replace('torch.', '') if precision else 'fp32'} | {ips:.1f} |")
    table = "\n".join([
        f"### ReID training throughput ({device.type}: {host}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads)",
        "",
        "One full training step (forward, ID + triplet + center loss, backward, Adam + center SGD), "
        "BNNeck / last stride 1, random init, batches already on the device (no decoding). "
        f"{args.iters} timed steps after {args.warmup} warm-up step(s); shared machines vary by up to 2x.",
        "",
        "| backbone | input | batch (PxK) | precision | images/s |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Reproduce: `python scripts/bench_reid.py --device {args.device} --iters {args.iters} "
        f"--warmup {args.warmup}`",
    ])
    if not args.no_write:
        update_section("bench_reid", table)
    print(table)


if __name__ == "__main__":
    main()
