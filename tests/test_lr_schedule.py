"""The reference LR schedule: per-epoch linear warmup 0.01x -> 1x over 10 epochs, x0.1 at 40 and 70."""

from __future__ import annotations

import pytest
import torch

from mot_reid.reid.recipe import SolverConfig
from mot_reid.reid.train import build_scheduler, lr_factor

BASE = 3.5e-4
# epoch -> expected LR; epoch 5 is halfway through warmup: 0.01 * 0.5 + 0.5 = 0.505.
EXPECTED = {0: 0.01 * BASE, 5: 0.505 * BASE, 9: (0.01 * 0.1 + 0.9) * BASE, 10: BASE, 39: BASE,
            40: 0.1 * BASE, 69: 0.1 * BASE, 70: 0.01 * BASE, 119: 0.01 * BASE}


@pytest.mark.parametrize("epoch", sorted(EXPECTED))
def test_lr_factor(epoch):
    assert lr_factor(epoch, SolverConfig()) * BASE == pytest.approx(EXPECTED[epoch], rel=1e-9)


def test_scheduler_stepped_per_epoch_gives_the_same_lrs():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param, torch.nn.Parameter(torch.zeros(1))], lr=BASE)
    scheduler = build_scheduler(optimizer, SolverConfig())
    seen = {}
    for epoch in range(120):
        seen[epoch] = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
    for epoch, lr in EXPECTED.items():
        assert seen[epoch] == pytest.approx(lr, rel=1e-9)


def test_no_warmup_starts_at_full_lr():
    solver = SolverConfig(warmup_epochs=0)
    assert lr_factor(0, solver) == 1.0
    assert lr_factor(40, solver) == pytest.approx(0.1)


@pytest.mark.parametrize("factor", [1.0, 10.0])
def test_head_lr_factor_scales_only_the_new_head_and_warmup_scales_every_group(factor):
    from mot_reid.reid.model import build_model
    from mot_reid.reid.recipe import ModelConfig
    from mot_reid.reid.train import build_optimizer

    model = build_model(ModelConfig(backbone="osnet_x0_25", pretrained="none"), num_classes=95)
    solver = SolverConfig(lr=3.5e-5, head_lr_factor=factor, warmup_epochs=2)
    optimizer = build_optimizer(model, solver)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    for name, param in model.named_parameters():
        if param.requires_grad:
            head = name.startswith(("bottleneck.", "classifier."))
            assert lr_of[id(param)] == pytest.approx(3.5e-5 * (factor if head else 1.0)), name
    # Without a head factor the reference's two groups, so optimizer state saved before the option still loads.
    assert (len(optimizer.param_groups) == 2) == (factor == 1.0)
    scheduler = build_scheduler(optimizer, solver)
    for epoch in range(3):  # warmup, then the base LR: the same factor for every group
        assert {round(g["lr"] / g["initial_lr"], 12) for g in optimizer.param_groups} == {
            round(lr_factor(epoch, solver), 12)}
        optimizer.step()
        scheduler.step()
