"""Bag-of-Tricks ReID training: one plain PyTorch loop, readable top to bottom.

    recipe -> dataset -> PK batches -> model -> ID + triplet + center loss -> Adam (+ SGD for centers)
           -> per-epoch LR schedule -> periodic evaluation -> atomic checkpoints -> plots

What a GPU run changes is chosen by the recipe's `runtime` / `data.device_cache` and the device,
never by a fork of the loop: the data path (`TrainData`, per-image CPU transforms, or
`device_data.DeviceTrainData`, a uint8 cache augmented batch-wise on the device), `prepare_network`
(channels_last, DistributedDataParallel under torchrun, torch.compile), and `amp_dtype` + a
GradScaler that is a no-op unless fp16.

Resuming is exact (bit for bit on the CPU; on CUDA up to cuDNN's autotuned, nondeterministic
kernels): a checkpoint holds the model, both optimizers, the scheduler, the grad scaler, the
sampler's epoch and the RNG states; batches and augmentations depend only on (seed, rank, epoch).
`data.sampler` chooses what an epoch is: each identity once (default) or the reference code's ~4x
longer epoch. Under DDP rank 0 alone logs, evaluates and writes files (see `distributed`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from mot_reid import config
from mot_reid.atomic import write_json
from mot_reid.device import resolve_device
from mot_reid.errors import UserError
from mot_reid.log import logger, progress
from mot_reid.provenance import versions
from mot_reid.reid import distributed
from mot_reid.reid.losses import ReIDLoss
from mot_reid.reid.model import CHECKPOINT_FORMAT, ReIDModel, build_model, load_state, read_checkpoint
from mot_reid.reid.precision import amp_dtype, make_grad_scaler, select_channels_last
from mot_reid.reid.recipe import ReIDRecipe, RuntimeConfig, SolverConfig

CHECKPOINT = "checkpoint.pt"  # the latest full training state, overwritten every checkpoint_every epochs
FINAL_MODEL = "model.pt"  # weights + recipe only: what eval-reid and the tracker's embedder load


# ---------------------------------------------------------------- schedule and optimizers

def lr_factor(epoch: int, solver: SolverConfig) -> float:
    """Multiplier of the base LR during 0-based `epoch`: linear warmup from warmup_factor to 1 over
    warmup_epochs, then x gamma at each milestone passed (the reference's WarmupMultiStepLR)."""
    factor = solver.gamma ** sum(epoch >= m for m in solver.milestones)
    if epoch < solver.warmup_epochs:
        alpha = epoch / solver.warmup_epochs
        factor *= solver.warmup_factor * (1 - alpha) + alpha
    return factor


HEAD_MODULES = ("bottleneck.", "classifier.")  # what a fine-tune initialises afresh


def build_optimizer(model: torch.nn.Module, solver: SolverConfig) -> torch.optim.Optimizer:
    """Adam (or SGD) with the reference's two parameter groups: weights, and biases with their own
    LR factor and weight decay. The BNNeck's frozen bias is left out. With `head_lr_factor` != 1 the
    head's weights and biases form two more groups at that multiple (group 0 stays the backbone's)."""
    split_head = solver.head_lr_factor != 1.0
    params: dict[tuple[bool, bool], list] = {(h, b): [] for h in (False, True) for b in (False, True)}
    for name, param in model.named_parameters():
        if param.requires_grad:
            params[(split_head and name.startswith(HEAD_MODULES), name.endswith("bias"))].append(param)
    groups = []
    for (head, bias), members in params.items():
        if members or not head:
            lr = solver.lr * (solver.bias_lr_factor if bias else 1.0) * (solver.head_lr_factor if head else 1.0)
            groups.append({"params": members, "lr": lr,
                           "weight_decay": solver.weight_decay_bias if bias else solver.weight_decay})
    if solver.optimizer == "adam":
        return torch.optim.Adam(groups, lr=solver.lr)
    return torch.optim.SGD(groups, lr=solver.lr, momentum=solver.momentum)


def build_scheduler(optimizer: torch.optim.Optimizer, solver: SolverConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per epoch, after it: epoch e runs at base_lr * lr_factor(e)."""
    def factor(epoch: int) -> float:
        return lr_factor(epoch, solver)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---------------------------------------------------------------- device-dependent switches

def channels_last(runtime: RuntimeConfig, device: torch.device) -> bool:
    return select_channels_last(runtime.channels_last, device.type)


def prepare_network(model: ReIDModel, runtime: RuntimeConfig, device: torch.device,
                    ctx: distributed.DistContext | None = None, id_loss: bool = True) -> torch.nn.Module:
    """What the loop calls forward on: the model in its memory format, wrapped in DDP under torchrun
    (SyncBatchNorm on CUDA), compiled if asked. The unwrapped `model` stays the owner of the weights
    (state_dicts without wrapper prefixes). Without the ID loss the classifier (and the BNNeck before
    it) get no gradient, which DDP must be told about."""
    if channels_last(runtime, device):
        model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one input size for the whole run: autotune the convolutions once
    net = (distributed.prepare_model(model, ctx, device, find_unused_parameters=not id_loss)
           if ctx is not None else model)
    return torch.compile(net) if runtime.compile else net


# ---------------------------------------------------------------- data

class TrainData:
    """The per-image CPU data path: PK batches of decoded, augmented images moved to `device`.

    Anything with the same four methods (iterate `(images, pids)` on the device, `__len__`,
    `set_epoch`, `state_dict`/`load_state_dict`) can replace it, e.g. a uint8 image cache augmented
    batch-wise on the GPU.
    """

    def __init__(self, items: list, recipe: ReIDRecipe, device: torch.device, rank: int = 0, world_size: int = 1):
        from mot_reid.reid.datasets import ImageDataset
        from mot_reid.reid.transforms import build_train_transform

        self.device = device
        self.seed, self.rank = recipe.solver.seed, rank
        # Under DDP this rank's share of each global PK batch: ids_per_batch / world_size whole identities.
        self.sampler = distributed.rank_pk_sampler([pid for _, pid, _ in items], recipe.data.ids_per_batch,
                                                   recipe.data.images_per_id, seed=recipe.solver.seed,
                                                   rank=rank, world_size=world_size, mode=recipe.data.sampler)
        # Workers are restarted every epoch (not persistent) so their seeds come from the main RNG,
        # which `set_epoch` reseeds: augmentation after a resume at an epoch boundary (where `train`
        # checkpoints) matches an uninterrupted run. Mid-epoch, only the device data path is exact.
        self.loader = DataLoader(ImageDataset(items, build_train_transform(recipe.input)),
                                 batch_sampler=self.sampler, num_workers=recipe.data.num_workers,
                                 pin_memory=device.type == "cuda")

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, pids, _camids, _index in self.loader:
            yield images.to(self.device, non_blocking=True), pids.to(self.device, non_blocking=True)

    def set_epoch(self, epoch: int) -> None:
        """The sampler's epoch, and the global torch RNG (the transforms' and the workers' seeds) reseeded
        from (seed, rank, epoch): ranks draw different augmentations, and a resume draws the same ones."""
        from mot_reid.reid.device_data import epoch_seed

        self.sampler.set_epoch(epoch)
        torch.manual_seed(epoch_seed(self.seed, self.rank, epoch))

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


def build_train_data(items: list, recipe: ReIDRecipe, device: torch.device, ctx: distributed.DistContext):
    """`data.device_cache`: on = decode once + batched augmentation on the device; off = `TrainData`;
    auto = on for CUDA."""
    mode = recipe.data.device_cache
    if mode == "on" or (mode == "auto" and device.type == "cuda"):
        from mot_reid.reid.device_data import DeviceTrainData

        return DeviceTrainData.from_recipe(items, recipe, device, rank=ctx.rank, world_size=ctx.world_size,
                                           channels_last=channels_last(recipe.runtime, device))
    return TrainData(items, recipe, device, rank=ctx.rank, world_size=ctx.world_size)


# ---------------------------------------------------------------- one step

def train_step(net: torch.nn.Module, criterion: ReIDLoss, optimizer: torch.optim.Optimizer,
               center_optimizer: torch.optim.Optimizer | None, scaler: torch.amp.GradScaler,
               images: torch.Tensor, pids: torch.Tensor, autocast: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Forward, the three losses in float32, backward, both optimizer steps. Returns detached loss
    parts (still on the device: no sync per step)."""
    optimizer.zero_grad(set_to_none=True)
    if center_optimizer is not None:
        center_optimizer.zero_grad(set_to_none=True)
    with torch.autocast(images.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        logits, feat = net(images)
    loss, parts = criterion(logits, feat, pids)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    if center_optimizer is not None:
        # The centers live outside DDP: average their gradients first, so that under fp16 every rank's
        # scaler sees the same inf/NaN verdict and skips or takes the step together.
        distributed.average_gradients(criterion.center.parameters())
        scaler.unscale_(center_optimizer)
        # The centers' gradient carries the loss weight (5e-4); undo it so their SGD moves at center_lr.
        for param in criterion.center.parameters():
            param.grad.mul_(1.0 / criterion.cfg.center_weight)
        scaler.step(center_optimizer)
    scaler.update()
    out = {"loss": loss.detach(), **{k: v.detach() for k, v in parts.items()}}
    out["acc"] = (logits.detach().argmax(1) == pids).float().mean()
    return out


class LossMeter:
    """One epoch's step losses, summed on the device (no sync per step). A step whose loss is not
    finite is left out of the means: under fp16 the grad scaler skipped that step; in any other
    precision the weights took it, and the run has diverged."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counted: torch.Tensor | int = 0
        self.steps = 0

    def add(self, parts: dict[str, torch.Tensor]) -> None:
        finite = torch.isfinite(parts["loss"])
        for key, value in parts.items():
            self.sums[key] = self.sums.get(key, 0) + torch.where(finite, value, 0)
        self.counted = self.counted + finite
        self.steps += 1

    def running(self) -> dict[str, float]:
        """This rank's means so far (syncs the device)."""
        counted = max(int(self.counted), 1)
        return {k: v.item() / counted for k, v in self.sums.items()}

    def epoch_means(self, epoch: int, skips_allowed: bool) -> tuple[dict[str, float], float]:
        """The global batch's mean losses (every rank's averaged: one collective per key) and the
        steps left out per rank; a UserError when the run diverged."""
        if not self.steps:
            return {}, 0.0
        counted = distributed.all_reduce_mean(torch.as_tensor(self.counted, dtype=torch.float64)).item()
        skipped = self.steps - counted
        if counted == 0 or (skipped and not skips_allowed):
            raise UserError(f"training diverged at epoch {epoch + 1} (a non-finite loss in {skipped:g} of "
                            f"{self.steps} steps); lower solver.lr")
        return {k: distributed.all_reduce_mean(v).item() / counted for k, v in self.sums.items()}, skipped


# ---------------------------------------------------------------- checkpoints

def rng_state() -> dict:
    """Every RNG the run draws from, as plain tensors/lists (loadable with weights_only=True). Not the
    CUDA generators: nothing in training draws from them (augmentations draw on the CPU), and their
    per-GPU states would tie a checkpoint to the number of GPUs visible when it was written."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_resumable(ckpt: dict, recipe: ReIDRecipe, num_classes: int, path: Path) -> None:
    """The checkpoint must be of the same architecture and dataset size as the recipe asks for."""
    theirs = {k: v for k, v in ckpt["recipe"]["model"].items() if k != "pretrained"}
    ours = {k: v for k, v in config.to_dict(recipe.model).items() if k != "pretrained"}
    if theirs != ours:
        diff = ", ".join(f"{k}: {theirs.get(k)!r} vs {ours.get(k)!r}" for k in ours if theirs.get(k) != ours.get(k))
        raise UserError(f"{path} was trained with another architecture ({diff} in checkpoint vs recipe)")
    if int(ckpt["num_classes"]) != num_classes:
        raise UserError(f"{path} was trained on {ckpt['num_classes']} identities; this dataset has {num_classes}")
    old, new = ckpt["recipe"], config.to_dict(recipe)
    # The sampler would go on with the checkpoint's seed and the augmentations with the new one.
    if old["solver"]["seed"] != new["solver"]["seed"]:
        raise UserError(f"{path} was trained with solver.seed={old['solver']['seed']}; resume with that seed")
    # A key the checkpoint predates had its default then.
    defaults = config.to_dict(ReIDRecipe())
    before = {s: {**defaults.get(s, {}), **old.get(s, {})} for s in new if isinstance(new[s], dict)}
    # The optimizer's parameter groups and their LRs come back from the checkpoint: a new factor cannot apply.
    if before["solver"]["head_lr_factor"] != new["solver"]["head_lr_factor"]:
        raise UserError(f"{path} was trained with solver.head_lr_factor={before['solver']['head_lr_factor']}; "
                        "resume with that value")
    changed = [f"{s}.{k}" for s in before for k in new[s] if s != "model" and before[s].get(k) != new[s][k]]
    if changed:
        logger.warning("resuming with recipe keys changed since the checkpoint: %s", ", ".join(changed))


# ---------------------------------------------------------------- evaluation

def run_evaluation(model: ReIDModel, dataset, recipe: ReIDRecipe, device: torch.device) -> dict:
    from mot_reid.reid.evaluate import evaluate_model

    metrics = evaluate_model(model, dataset, recipe, device, feat=recipe.test.feat, rerank=recipe.test.rerank)
    model.train()
    return metrics


def summarise_eval(metrics: dict, epoch: int) -> dict:
    keep = {k: float(metrics[k]) for k in ("rank1", "rank5", "rank10", "mAP", "mINP") if k in metrics}
    cmc = [float(v) for v in list(metrics.get("cmc", []))[:50]]  # the head of the curve is what is plotted
    return {"epoch": epoch, **keep, "cmc": cmc}


# ---------------------------------------------------------------- the loop

def train(recipe: ReIDRecipe, data_root: str | Path | None, output_dir: str | Path, resume: bool = False,
          dataset=None, on_step: Callable[[int, int], None] | None = None) -> dict:
    """Train `recipe` on the dataset at `data_root` (or an already loaded `dataset`), writing into
    `output_dir`: checkpoint.pt, model.pt, config.yaml, history.json, PNG plots. Returns the history.

    `on_step(epoch, step)` is called after every optimizer step (a hook for tests and tools).
    """
    output_dir = Path(output_dir)
    ckpt_path = output_dir / CHECKPOINT
    if resume and not ckpt_path.is_file():
        raise UserError(f"nothing to resume: {ckpt_path} does not exist")
    if not resume and ckpt_path.is_file():
        raise UserError(f"{output_dir} already holds a training run; pass --resume to continue it "
                        "or pick another --output")
    if dataset is None:
        from mot_reid.reid.datasets import load_dataset

        dataset = load_dataset(data_root, recipe.data.dataset)
    if not dataset.train:
        raise UserError(f"the dataset at {dataset.root} has no training images")
    device = resolve_device(recipe.runtime.device)
    # torchrun sets WORLD_SIZE > 1: join the process group; this rank trains on GPU LOCAL_RANK.
    ctx = distributed.init_from_env(device.type)
    try:
        return _train(recipe, dataset, output_dir, resume, on_step, ctx, distributed.device_for(ctx, str(device)))
    finally:
        distributed.cleanup(ctx)


def _train(recipe: ReIDRecipe, dataset, output_dir: Path, resume: bool, on_step, ctx: distributed.DistContext,
           device: torch.device) -> dict:
    ckpt_path = output_dir / CHECKPOINT
    num_classes = dataset.num_train_pids
    solver = recipe.solver
    if not ctx.is_main:
        logger.setLevel(logging.WARNING)  # rank 0 alone logs, evaluates and writes files

    ckpt = None
    if resume:
        ckpt = read_checkpoint(ckpt_path)
        check_resumable(ckpt, recipe, num_classes, ckpt_path)
        recipe.model.pretrained = "none"  # the checkpoint's weights replace any initialisation
    seed_everything(solver.seed)
    model = build_model(recipe.model, num_classes).to(device)
    criterion = ReIDLoss(recipe.loss, num_classes, model.feat_dim).to(device)
    optimizer = build_optimizer(model, solver)
    center_optimizer = (torch.optim.SGD(criterion.center.parameters(), lr=recipe.loss.center_lr)
                        if criterion.center is not None else None)
    scheduler = build_scheduler(optimizer, solver)
    autocast = amp_dtype(recipe.runtime.amp, device)
    scaler = make_grad_scaler(device.type, autocast)  # a pass-through unless fp16
    data = build_train_data(dataset.train, recipe, device, ctx)
    history: dict = {"epochs": [], "evals": []}
    start_epoch = 0

    if ckpt is not None:
        load_state(model, ckpt["model"], str(ckpt_path))
        criterion.load_state_dict(ckpt["criterion"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if center_optimizer is not None:
            center_optimizer.load_state_dict(ckpt["center_optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        data.load_state_dict(ckpt["sampler"])
        set_rng_state(ckpt["rng"])
        history = ckpt["history"]
        start_epoch = int(ckpt["epoch"])
        logger.info("resuming %s after epoch %d", ckpt_path, start_epoch)
    del ckpt

    # Logged once the checkpoint, the starting weights and the batch shape have passed, so a mistake in them is
    # the one line on stderr.
    logger.info("%s", dataset.summary() if hasattr(dataset, "summary") else f"{len(dataset.train)} training images")
    net = prepare_network(model, recipe.runtime, device, ctx, id_loss=recipe.loss.id_loss)
    memory_format = torch.channels_last if channels_last(recipe.runtime, device) else torch.contiguous_format
    can_evaluate = bool(dataset.query) and bool(dataset.gallery)
    if ctx.is_main:
        config.save(recipe, output_dir / "config.yaml")

    def checkpoint(epoch: int) -> None:
        distributed.save_on_main({
            "format": CHECKPOINT_FORMAT, "recipe": config.to_dict(recipe), "num_classes": num_classes,
            "model": model.state_dict(), "criterion": criterion.state_dict(), "optimizer": optimizer.state_dict(),
            "center_optimizer": center_optimizer.state_dict() if center_optimizer is not None else None,
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch,
            "sampler": data.state_dict(), "rng": rng_state(), "history": history,
        }, ckpt_path)

    for epoch in range(start_epoch, solver.epochs):
        data.set_epoch(epoch)
        model.train()
        lr = optimizer.param_groups[0]["lr"]
        meter = LossMeter()
        images_seen, started = 0, time.perf_counter()
        bar = progress(total=len(data), desc=f"epoch {epoch + 1}/{solver.epochs}", unit="batch",
                       disable=None if ctx.is_main else True)
        for step, (images, pids) in enumerate(data):
            images = images.contiguous(memory_format=memory_format)
            parts = train_step(net, criterion, optimizer, center_optimizer, scaler, images, pids, autocast)
            meter.add(parts)
            images_seen += len(pids) * ctx.world_size
            if on_step is not None:
                on_step(epoch, step)
            bar.update()
            if step % 10 == 0 or step == len(data) - 1:  # .item() syncs the device: not every step
                bar.set_postfix({k: f"{v:.3f}" for k, v in meter.running().items()} | {"lr": f"{lr:.2e}"})
        bar.close()
        scheduler.step()
        seconds = time.perf_counter() - started
        means, skipped = meter.epoch_means(epoch, skips_allowed=scaler.is_enabled())
        if skipped:
            logger.warning("epoch %d: the fp16 grad scaler skipped %g of %d steps (non-finite loss)", epoch + 1,
                           skipped, meter.steps)
        history["epochs"].append({"epoch": epoch + 1, "lr": lr, **means, "seconds": seconds,
                                  "images_per_s": images_seen / max(seconds, 1e-9)})
        logger.info("epoch %d/%d: %s lr %.2e, %.0f images/s", epoch + 1, solver.epochs,
                    " ".join(f"{k} {v:.4f}" for k, v in means.items()), lr, images_seen / max(seconds, 1e-9))

        last = epoch + 1 == solver.epochs
        if ctx.is_main and can_evaluate and solver.eval_every > 0 and ((epoch + 1) % solver.eval_every == 0 or last):
            result = summarise_eval(run_evaluation(model, dataset, recipe, device), epoch + 1)
            history["evals"].append(result)
            logger.info("epoch %d evaluation: rank-1 %.1f%% mAP %.1f%% mINP %.1f%%", epoch + 1,
                        100 * result.get("rank1", 0), 100 * result.get("mAP", 0), 100 * result.get("mINP", 0))
        if last or (solver.checkpoint_every > 0 and (epoch + 1) % solver.checkpoint_every == 0):
            checkpoint(epoch + 1)

    epochs = history["epochs"][-1]["epoch"] if history["epochs"] else 0
    distributed.save_on_main({"format": CHECKPOINT_FORMAT, "recipe": config.to_dict(recipe),
                              "num_classes": num_classes, "model": model.state_dict(), "epoch": epochs},
                             output_dir / FINAL_MODEL)
    if ctx.is_main:
        write_history(output_dir, history)
        logger.info("final model: %s", output_dir / FINAL_MODEL)
    distributed.barrier()
    return history


def write_history(output_dir: Path, history: dict) -> None:
    """history.json with provenance, and the plots."""
    from mot_reid.reid.plots import plot_history

    write_json(output_dir / "history.json", {**history, "versions": versions()})
    for path in plot_history(history, output_dir):
        logger.info("wrote %s", path)
