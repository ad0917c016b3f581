"""Mixed-precision selection, fp32 loss distances under autocast, the scaler-driven step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mot_reid.errors import UserError
from mot_reid.reid.losses import CenterLoss, batch_hard_triplet_loss
from mot_reid.reid.precision import (
    Precision,
    make_grad_scaler,
    run_in_fp32,
    select_amp_dtype,
    select_channels_last,
)
from mot_reid.reid.recipe import RuntimeConfig


@pytest.mark.parametrize(("amp", "device", "bf16", "expected"), [
    ("auto", "cpu", False, None),
    ("auto", "cpu", True, None),
    ("auto", "mps", False, None),
    ("auto", "cuda", True, torch.bfloat16),
    ("auto", "cuda", False, torch.float16),
    ("off", "cuda", True, None),
    ("fp16", "cuda", True, torch.float16),
    ("bf16", "cuda", True, torch.bfloat16),
    ("bf16", "cpu", False, torch.bfloat16),  # asked for explicitly: CPU autocast supports bf16
])
def test_amp_dtype_by_device(amp, device, bf16, expected):
    assert select_amp_dtype(amp, device, bf16_supported=bf16) == expected


def test_amp_bad_choices_are_user_errors():
    with pytest.raises(UserError, match="runtime.amp"):
        select_amp_dtype("half", "cuda", True)
    with pytest.raises(UserError, match="no bf16 support"):
        select_amp_dtype("bf16", "cuda", bf16_supported=False)
    with pytest.raises(UserError, match="channels_last"):
        select_channels_last("yes", "cuda")


def test_channels_last_and_scaler_by_device():
    assert select_channels_last("auto", "cuda") and not select_channels_last("auto", "cpu")
    assert select_channels_last("on", "cpu") and not select_channels_last("off", "cuda")
    assert make_grad_scaler("cpu", torch.float16).is_enabled()  # (a CUDA scaler disables itself without CUDA)
    assert not make_grad_scaler("cpu", torch.bfloat16).is_enabled()
    assert not make_grad_scaler("cpu", None).is_enabled()


def test_from_recipe_on_cpu_is_plain_fp32():
    prec = Precision.from_recipe(RuntimeConfig(), "cpu")
    assert prec.dtype is None and prec.name == "fp32" and not prec.channels_last and not prec.scaler.is_enabled()
    model = nn.Conv2d(3, 4, 3)
    assert prec.prepare_model(model) is model
    x = torch.randn(2, 3, 8, 8)
    with prec.autocast():
        assert model(x).dtype == torch.float32
    forced = Precision.from_recipe(RuntimeConfig(amp="bf16", channels_last="on"), "cpu")
    assert forced.name == "bf16" and forced.prepare_input(x).is_contiguous(memory_format=torch.channels_last)
    with forced.autocast():
        assert model(x).dtype == torch.bfloat16


def _features(n_ids=8, k=4, dim=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Large norms, small distances: |x|^2 + |y|^2 - 2xy cancels catastrophically in bf16.
    centers = torch.randn(n_ids, dim, generator=g) * 0.02 + 20
    feat = centers.repeat_interleave(k, 0) + 0.03 * torch.randn(n_ids * k, dim, generator=g)
    labels = torch.arange(n_ids).repeat_interleave(k)
    return feat, labels


def test_triplet_distances_run_in_fp32_under_autocast():
    feat, labels = _features()
    reference = batch_hard_triplet_loss(feat, labels, 0.3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # Without the helper the distance matmul runs in bf16 even for fp32 inputs, and the
        # small within-identity distances drown in the rounding of the large norms.
        raw = batch_hard_triplet_loss(feat, labels, 0.3)
        safe = run_in_fp32(batch_hard_triplet_loss, feat.bfloat16().float(), labels, margin=0.3)
        exact = run_in_fp32(batch_hard_triplet_loss, feat, labels, 0.3)
    assert exact.dtype == torch.float32
    torch.testing.assert_close(exact, reference)
    assert 0 < reference < 1
    assert (raw.float() - reference).abs() > 1.0  # the problem the helper exists for
    assert torch.isfinite(safe)


def test_center_loss_and_half_inputs_are_upcast():
    feat, labels = _features()
    center = CenterLoss(8, feat.shape[1])
    reference = center(feat, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = run_in_fp32(center, feat, labels)
        seen = run_in_fp32(lambda x: x.dtype, feat.bfloat16())
    torch.testing.assert_close(value, reference)
    assert seen == torch.float32


def test_backward_and_step_rescales_center_grads_before_stepping():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    centers = nn.Parameter(torch.zeros(3, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    center_opt = torch.optim.SGD([centers], lr=0.5)
    prec = Precision("cpu")
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    out = model(x)
    weight = 5e-4
    loss = nn.functional.cross_entropy(out, y) + weight * (out - centers[y]).pow(2).sum(1).mean()
    loss.backward(retain_graph=True)
    expected_center_grad = centers.grad.clone() / weight
    centers.grad = None
    model.zero_grad()

    def rescale():
        centers.grad.mul_(1.0 / weight)

    prec.backward_and_step(loss, [opt, center_opt], before_step=rescale)
    torch.testing.assert_close(centers.detach(), -0.5 * expected_center_grad)
    assert prec.state_dict() == {}  # a disabled scaler has no state to checkpoint


@pytest.mark.gpu
def test_bf16_and_fp16_losses_track_fp32_on_gpu():
    """A tiny conv net trained a few steps from the same seed: bf16 / fp16 losses stay near fp32's."""
    from mot_reid.reid.losses import ReIDLoss
    from mot_reid.reid.recipe import LossConfig

    def run(amp: str) -> list[float]:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten()).cuda()
        head = nn.Linear(16, 8).cuda()
        criterion = ReIDLoss(LossConfig(center=False), 8, 16).cuda()
        prec = Precision.from_recipe(RuntimeConfig(amp=amp), "cuda")
        opt = torch.optim.Adam(list(net.parameters()) + list(head.parameters()), lr=1e-3)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(32, 3, 32, 16, generator=g).cuda()
        y = torch.arange(8).repeat_interleave(4).cuda()
        losses = []
        for _ in range(10):
            opt.zero_grad()
            with prec.autocast():
                feat = net(prec.prepare_input(x))
                logits = head(feat)
            loss, _ = run_in_fp32(criterion, logits, feat, y)
            prec.backward_and_step(loss, [opt])
            losses.append(loss.item())
        return losses

    fp32 = run("off")
    for amp in ("bf16", "fp16"):
        if amp == "bf16" and not torch.cuda.is_bf16_supported():
            continue
        low = run(amp)
        for a, b in zip(fp32, low, strict=True):
            assert abs(a - b) <= 0.05 * abs(a) + 0.02, (amp, fp32, low)
