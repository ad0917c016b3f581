"""DDP on CPU: two processes on the gloo backend, started the way torchrun starts them (env vars).

Two spawns (starting processes is the expensive part). The first runs the building blocks in a toy
loop: the rank sampler's identity split (identity and reference epochs), equal gradients and
weights on both ranks, the device data path resumed from a rank-0 checkpoint. The second runs the
real `train()` twice, once straight through and once killed and resumed, and compares the outputs.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from mot_reid import config
from mot_reid.errors import UserError
from mot_reid.reid import distributed as D
from mot_reid.reid.device_data import BatchAugment, DeviceTrainData, ImageCache
from mot_reid.reid.losses import CenterLoss, ReIDLoss, batch_hard_triplet_loss
from mot_reid.reid.recipe import InputConfig, LossConfig, ReIDRecipe
from mot_reid.reid.sampler import PKSampler
from mot_reid.reid.train import train, train_step

WORLD = 2
N_IDS, P, K = 24, 8, 3  # global P = 8 identities: 4 per rank
SIZE = (16, 8)


def _pids() -> list[int]:
    # 1 to 5 images per identity: some need sampling with replacement (fewer than K)
    return [pid for pid in range(N_IDS) for _ in range(1 + pid % 5)]


class ToyReID(nn.Module):
    """The shape of the real model in miniature: conv + BN backbone, pooled feature, BNNeck, classifier."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.neck = nn.BatchNorm1d(6)
        self.neck.bias.requires_grad_(False)
        self.classifier = nn.Linear(6, N_IDS, bias=False)

    def forward(self, x):
        feat = self.backbone(x)
        return self.classifier(self.neck(feat)), feat


def _build(rank: int):
    torch.manual_seed(0)  # same initial weights everywhere (DDP would broadcast rank 0's anyway)
    model = ToyReID()
    center = CenterLoss(N_IDS, 6)
    ddp = D.prepare_model(model, D.DistContext(rank, WORLD, rank, "gloo"), torch.device("cpu"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    center_opt = torch.optim.SGD(center.parameters(), lr=0.5)
    return model, ddp, center, opt, center_opt


def _data(rank: int) -> DeviceTrainData:
    pids = _pids()
    images = torch.randint(0, 256, (len(pids), 3, *SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    sampler = D.rank_pk_sampler(pids, P, K, seed=3, rank=rank, world_size=WORLD)
    augment = BatchAugment(InputConfig(size=SIZE, padding=2), "cpu")
    return DeviceTrainData(ImageCache(images, torch.device("cpu")), pids, sampler, augment, seed=3, rank=rank)


def _epoch(ddp, center, opt, center_opt, data, epoch, grads=None):
    data.set_epoch(epoch)
    for images, pids in data:
        opt.zero_grad()
        center_opt.zero_grad()
        logits, feat = ddp(images)
        loss = (nn.functional.cross_entropy(logits, pids, label_smoothing=0.1)
                + batch_hard_triplet_loss(feat, pids, 0.3) + 5e-4 * center(feat, pids))
        loss.backward()
        D.average_gradients(center.parameters())
        for param in center.parameters():
            param.grad.mul_(1 / 5e-4)
        if grads is not None and not grads:
            grads.append(torch.cat([p.grad.flatten() for p in ddp.parameters() if p.grad is not None]))
            grads.append(torch.cat([p.grad.flatten() for p in center.parameters()]))
        opt.step()
        center_opt.step()


def _flat(model, center) -> torch.Tensor:
    """Every parameter and buffer (BN running statistics included)."""
    return torch.cat([t.detach().flatten().float() for t in [*model.state_dict().values(), *center.parameters()]])


def _params(model, center) -> torch.Tensor:
    return torch.cat([t.detach().flatten() for t in [*model.parameters(), *center.parameters()]])


def _gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's `tensor`, stacked in rank order (to compare ranks)."""
    out = [torch.empty_like(tensor) for _ in range(WORLD)]
    dist.all_gather(out, tensor.contiguous())
    return torch.stack(out)


def _join(rank: int, port: int) -> D.DistContext:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    return D.init_from_env("cpu")


def _worker(rank: int, port: int, out_dir: str) -> None:
    ctx = _join(rank, port)
    out = Path(out_dir)
    try:
        result = {"rank": ctx.rank, "world": ctx.world_size, "backend": ctx.backend, "main": D.is_main_process()}
        pids = _pids()

        # Which identities each rank trains on, per batch, for two epochs.
        sampler = D.rank_pk_sampler(pids, P, K, seed=3, rank=rank, world_size=WORLD)
        result["batches"] = {}
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            result["batches"][epoch] = [[pids[i] for i in batch] for batch in sampler]
        # The same in reference mode (the Bag-of-Tricks code's chunked epochs), as indices.
        reference = D.rank_pk_sampler(pids, P, K, seed=3, rank=rank, world_size=WORLD, mode="reference")
        reference.set_epoch(1)
        result["reference_batches"] = list(reference)

        # Uninterrupted: two epochs; the first step's gradients must agree across ranks.
        model, ddp, center, opt, center_opt = _build(rank)
        data = _data(rank)
        grads: list[torch.Tensor] = []
        _epoch(ddp, center, opt, center_opt, data, 0, grads)
        _epoch(ddp, center, opt, center_opt, data, 1)
        result["grads"] = _gather(torch.stack([grads[0].sum(), grads[0].abs().sum(), grads[1].abs().sum()]))
        # Parameters must agree across ranks. BN running statistics are per rank without SyncBatchNorm
        # (DDP re-broadcasts rank 0's at every forward; checkpoints come from rank 0).
        result["params"] = _gather(_params(model, center))
        result["weights"] = _flat(model, center)

        # Interrupted: one epoch, checkpoint on rank 0, fresh objects load it, the second epoch.
        model, ddp, center, opt, center_opt = _build(rank)
        data = _data(rank)
        _epoch(ddp, center, opt, center_opt, data, 0)
        ckpt = out / "checkpoint.pt"
        state = {"model": ddp.module.state_dict(), "center": center.state_dict(), "opt": opt.state_dict(),
                 "center_opt": center_opt.state_dict(), "data": data.state_dict()}
        result["wrote"] = D.save_on_main(state, ckpt)
        del model, ddp, center, opt, center_opt, data
        model, ddp, center, opt, center_opt = _build(rank)
        data = _data(rank)
        loaded = torch.load(ckpt, weights_only=True)
        model.load_state_dict(loaded["model"])
        center.load_state_dict(loaded["center"])
        opt.load_state_dict(loaded["opt"])
        center_opt.load_state_dict(loaded["center_opt"])
        data.load_state_dict(loaded["data"])
        _epoch(ddp, center, opt, center_opt, data, 1)
        result["resumed"] = _flat(model, center)

        result["mean"] = D.all_reduce_mean(torch.tensor([float(rank)]))

        # fp16's GradScaler with a non-finite batch on rank 1 only: the step is skipped on both ranks
        # (DDP averages the model's gradients; the centers' are averaged before the scaler judges them).
        model, ddp, _, opt, _ = _build(rank)
        criterion = ReIDLoss(LossConfig(), N_IDS, 6)
        center_opt = torch.optim.SGD(criterion.center.parameters(), lr=0.5)
        scaler = torch.amp.GradScaler("cpu", enabled=True)
        data = _data(rank)
        data.set_epoch(0)
        images, pids = next(iter(data))
        if rank == 1:
            images[0] = float("nan")
        train_step(ddp, criterion, opt, center_opt, scaler, images, pids, None)
        result["after_bad_step"] = _gather(torch.cat([criterion.center.centers.detach().flatten(),
                                                      torch.tensor([scaler.get_scale()])]))
        torch.save(result, out / f"rank{rank}.pt")
    finally:
        D.barrier()
        D.cleanup(ctx)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return out, [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


class Kill(Exception):
    """A run interrupted mid-epoch on every rank (as a killed job is)."""


def _train_worker(rank: int, port: int, out_dir: str, data_root: str) -> None:
    """The real training loop under DDP: straight through, and killed in the third epoch then resumed."""
    from test_train import TINY

    ctx = _join(rank, port)
    out = Path(out_dir)

    def recipe() -> ReIDRecipe:  # global P = 4 identities: 2 whole identities per rank; CPU data path
        return config.load(ReIDRecipe, None, [*TINY, "data.ids_per_batch=4", "data.device_cache=off"])

    def kill(epoch: int, step: int) -> None:
        if epoch == 2 and step == 1:
            raise Kill

    try:
        full = train(recipe(), data_root, out / "full")
        try:
            train(recipe(), data_root, out / "killed", on_step=kill)
        except Kill:
            pass
        resumed = train(recipe(), data_root, out / "killed", resume=True)
        # Triplet (+ center) only: the classifier gets no gradient, and DDP must still finish its steps.
        triplet_only = train(config.load(ReIDRecipe, None, [*TINY, "data.ids_per_batch=4", "loss.id_loss=false",
                                                            "solver.epochs=1"]), data_root, out / "triplet_only")
        torch.save({"full": full["epochs"], "resumed": resumed["epochs"], "triplet_only": triplet_only["epochs"]},
                   out / f"history{rank}.pt")
    finally:
        D.barrier()
        D.cleanup(ctx)


@pytest.fixture(scope="module")
def ddp_train(tmp_path_factory):
    from test_train import make_folder_dataset

    data = make_folder_dataset(tmp_path_factory.mktemp("reid") / "data", ids=12)
    out = tmp_path_factory.mktemp("ddp_train")
    mp.spawn(_train_worker, args=(_free_port(), str(out), str(data)), nprocs=WORLD, join=True)
    return out, [torch.load(out / f"history{r}.pt", weights_only=True) for r in range(WORLD)]


def test_train_under_ddp_resumes_to_the_uninterrupted_weights(ddp_train):
    out, histories = ddp_train
    for run in ("full", "killed", "triplet_only"):
        names = sorted(p.name for p in (out / run).iterdir())
        assert names == ["checkpoint.pt", "config.yaml", "history.json", "losses.png", "lr.png", "model.pt"], names
    a = torch.load(out / "full" / "model.pt", weights_only=True)["model"]
    b = torch.load(out / "killed" / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and not any(k.startswith("module.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The logged losses are the global batch's (averaged over ranks): the same on both ranks, and the
    # resumed run's history (its first epochs come from the checkpoint) equals the uninterrupted one.
    losses = [[e["loss"] for e in h["full"]] for h in histories]
    assert len(losses[0]) == 4 and losses[0] == losses[1]
    assert [e["loss"] for e in histories[0]["resumed"]] == losses[0]
    assert [set(e) >= {"triplet", "center"} and "id" not in e for e in histories[0]["triplet_only"]] == [True]


def test_processes_join_from_torchrun_env(ddp_results):
    _, results = ddp_results
    assert [(r["rank"], r["world"], r["backend"], r["main"]) for r in results] == [(0, 2, "gloo", True),
                                                                                  (1, 2, "gloo", False)]


def test_ranks_get_disjoint_whole_identities_covering_each_once(ddp_results):
    _, results = ddp_results
    for epoch in (0, 1):
        per_rank = [r["batches"][epoch] for r in results]
        assert len(per_rank[0]) == len(per_rank[1]) == N_IDS // P  # in step: same number of batches
        seen = []
        for b0, b1 in zip(*per_rank, strict=True):
            for batch in (b0, b1):
                assert len(batch) == (P // WORLD) * K
                ids = sorted(set(batch))
                assert len(ids) == P // WORLD and all(batch.count(i) == K for i in ids)  # whole identities
            assert not set(b0) & set(b1)  # disjoint within a global batch
            seen += sorted(set(b0)) + sorted(set(b1))
        assert sorted(seen) == list(range(N_IDS))  # every identity exactly once per epoch
    assert results[0]["batches"][0] != results[0]["batches"][1]  # reshuffled per epoch


def test_reference_mode_ranks_split_each_global_batch_by_whole_identities(ddp_results):
    _, results = ddp_results
    pids = _pids()
    per_rank = [r["reference_batches"] for r in results]
    single = PKSampler(pids, P, K, seed=3, mode="reference")  # the global draw, one process
    single.set_epoch(1)
    whole = list(single)
    # in step; every identity here has < 2K images, so one chunk each: the reference count is #ids / global P
    assert len(per_rank[0]) == len(per_rank[1]) == len(whole) == N_IDS // P
    for b0, b1, global_batch in zip(*per_rank, whole, strict=True):
        for batch in (b0, b1):
            ids = [pids[i] for i in batch]
            assert len(set(ids)) == P // WORLD and all(ids.count(i) == K for i in set(ids))
        assert not {pids[i] for i in b0} & {pids[i] for i in b1}
        assert b0 + b1 == global_batch  # rank r holds the r-th P/world identities of the global batch


def test_ddp_step_gives_equal_gradients_and_weights_on_both_ranks(ddp_results):
    _, results = ddp_results
    for r in results:
        grads, params = r["grads"], r["params"]
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-7)
        assert grads[0, 1] > 0 and grads[0, 2] > 0
        torch.testing.assert_close(params[0], params[1], rtol=1e-6, atol=1e-7)
    torch.manual_seed(0)
    start = torch.cat([p.detach().flatten() for p in ToyReID().parameters()])
    assert (results[0]["params"][0][: len(start)] - start).abs().max() > 1e-3  # training moved the weights


def test_only_rank_zero_writes_and_resume_matches_uninterrupted(ddp_results):
    out, results = ddp_results
    assert [r["wrote"] for r in results] == [True, False]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "rank0.pt", "rank1.pt"]  # no temp files
    keys = torch.load(out / "checkpoint.pt", weights_only=True)["model"].keys()
    assert not any(k.startswith("module.") for k in keys)
    for r in results:
        torch.testing.assert_close(r["resumed"], r["weights"], rtol=1e-6, atol=1e-7)


def test_fp16_step_with_a_bad_batch_on_one_rank_is_skipped_on_every_rank(ddp_results):
    _, results = ddp_results
    after = results[0]["after_bad_step"]
    assert torch.isfinite(after).all()
    torch.testing.assert_close(after[0], after[1], rtol=0, atol=0)  # same centers and scale on both ranks
    assert after[0, -1] == 65536.0 / 2  # the scaler backed off once: the step was judged non-finite


def test_all_reduce_mean(ddp_results):
    _, results = ddp_results
    assert [r["mean"].item() for r in results] == [0.5, 0.5]


# ---------------------------------------------------------------- single-process pieces

def test_single_process_defaults(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = D.init_from_env("cpu")
    assert not ctx.distributed and ctx.is_main and D.is_main_process() and D.get_world_size() == 1
    model = ToyReID()
    assert D.prepare_model(model, ctx, torch.device("cpu")) is model
    x = torch.randn(3, 2)
    assert torch.equal(D.all_reduce_mean(x), x)
    D.barrier()  # a no-op without a process group
    assert D.device_for(ctx, "cpu") == torch.device("cpu")
    assert D.device_for(D.DistContext(1, 2, 1, "nccl"), "cuda") == torch.device("cuda", 1)


def test_batch_splitting_rules():
    assert D.ids_per_rank(16, 4) == 4
    with pytest.raises(UserError, match="multiple of 3"):
        D.ids_per_rank(16, 3)
    with pytest.raises(UserError, match="at least 2"):
        D.ids_per_rank(16, 16)


def test_sync_batchnorm_conversion_keeps_the_bnneck_bias_frozen():
    model = nn.SyncBatchNorm.convert_sync_batchnorm(ToyReID())
    assert isinstance(model.neck, nn.SyncBatchNorm) and isinstance(model.backbone[1], nn.SyncBatchNorm)
    assert not model.neck.bias.requires_grad and model.neck.weight.requires_grad
    with pytest.raises(UserError, match="SyncBatchNorm needs CUDA"):
        D.prepare_model(ToyReID(), D.DistContext(0, 2, 0, "gloo"), torch.device("cpu"), sync_bn="on")


def test_env_errors_are_user_errors(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(UserError, match="WORLD_SIZE"):
        D.init_from_env("cpu")
