"""Mixed-precision selection, and the training step under autocast: losses in fp32, center gradients rescaled."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mot_reid.errors import UserError
from mot_reid.reid.losses import ReIDLoss, batch_hard_triplet_loss
from mot_reid.reid.precision import amp_dtype, make_grad_scaler, select_amp_dtype, select_channels_last
from mot_reid.reid.recipe import LossConfig
from mot_reid.reid.train import train_step


@pytest.mark.parametrize(("amp", "device", "bf16", "expected"), [
    ("auto", "cpu", False, None),
    ("auto", "cpu", True, None),
    ("auto", "mps", False, None),
    ("auto", "cuda", True, torch.bfloat16),
    ("auto", "cuda", False, torch.float16),
    ("off", "cuda", True, None),
    ("fp16", "cuda", True, torch.float16),
    ("bf16", "cuda", True, torch.bfloat16),
    ("bf16", "cuda", False, torch.bfloat16),  # asked for explicitly: emulated on pre-Ampere GPUs
    ("bf16", "cpu", False, torch.bfloat16),  # asked for explicitly: CPU autocast supports bf16
])
def test_amp_dtype_by_device(amp, device, bf16, expected):
    assert select_amp_dtype(amp, device, native_bf16=bf16) == expected


def test_amp_bad_choices_are_user_errors():
    with pytest.raises(UserError, match="runtime.amp"):
        select_amp_dtype("half", "cuda", True)
    with pytest.raises(UserError, match="channels_last"):
        select_channels_last("yes", "cuda")


def test_channels_last_and_scaler_by_device():
    assert select_channels_last("auto", "cuda") and not select_channels_last("auto", "cpu")
    assert select_channels_last("on", "cpu") and not select_channels_last("off", "cuda")
    assert make_grad_scaler("cpu", torch.float16).is_enabled()  # (a CUDA scaler disables itself without CUDA)
    assert not make_grad_scaler("cpu", torch.bfloat16).is_enabled()
    assert not make_grad_scaler("cpu", None).is_enabled()


def _features(n_ids=8, k=4, dim=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Large norms, small distances: |x|^2 + |y|^2 - 2xy cancels catastrophically in bf16.
    centers = torch.randn(n_ids, dim, generator=g) * 0.02 + 20
    feat = centers.repeat_interleave(k, 0) + 0.03 * torch.randn(n_ids * k, dim, generator=g)
    labels = torch.arange(n_ids).repeat_interleave(k)
    return feat, labels


class _Net(nn.Module):
    """A ReID-shaped toy: (logits, feature) in training mode, as ReIDModel returns."""

    def __init__(self, feat_dim=256, num_classes=8):
        super().__init__()
        self.embed = nn.Linear(feat_dim, feat_dim)
        self.classifier = nn.Linear(feat_dim, num_classes, bias=False)
        nn.init.eye_(self.embed.weight)
        nn.init.zeros_(self.embed.bias)

    def forward(self, x):
        feat = self.embed(x)
        return self.classifier(feat), feat


def _step(autocast, center=True, device="cpu"):
    torch.manual_seed(0)
    feat, labels = _features()
    net = _Net().to(device)
    criterion = ReIDLoss(LossConfig(center=center), 8, 256).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)  # lr 0: the step must not move the network
    center_opt = torch.optim.SGD(criterion.center.parameters(), lr=0.5) if center else None
    start = criterion.center.centers.detach().clone() if center else None
    scaler = make_grad_scaler(torch.device(device).type, autocast)
    parts = train_step(net, criterion, opt, center_opt, scaler, feat.to(device), labels.to(device), autocast)
    return parts, criterion, feat, labels, start


def test_triplet_distances_stay_fp32_in_a_bf16_training_step():
    feat, labels = _features()
    reference = batch_hard_triplet_loss(feat, labels, 0.3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # Inside autocast the distance matmul would run in bf16 even for fp32 inputs, and the small
        # within-identity distances drown in the rounding of the large norms ...
        raw = batch_hard_triplet_loss(feat, labels, 0.3)
    assert (raw.float() - reference).abs() > 1.0
    # ... which is why the training step computes the losses outside the autocast region.
    # The identity network's bf16 forward returns the bf16-rounded features; the loss on them must be
    # the exact fp32 loss of those rounded values.
    parts, *_ = _step(torch.bfloat16)
    assert parts["triplet"].dtype == torch.float32
    torch.testing.assert_close(parts["triplet"], batch_hard_triplet_loss(feat.bfloat16().float(), labels, 0.3))


def test_train_step_moves_centers_by_center_lr_times_the_unweighted_gradient():
    # The network has lr 0 and an identity embedding, so the features the loss sees are `feat`.
    _, criterion, feat, labels, start = _step(None)
    start = start.requires_grad_(True)
    unweighted = ((feat - start[labels]) ** 2).sum(1).mean()  # the center loss before its 5e-4 weight
    expected = start.detach() - 0.5 * torch.autograd.grad(unweighted, start)[0]
    torch.testing.assert_close(criterion.center.centers.detach(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_bf16_and_fp16_training_steps_track_fp32_on_gpu():
    fp32 = {k: v.item() for k, v in _step(None, device="cuda")[0].items()}
    native_bf16 = torch.cuda.get_device_capability()[0] >= 8
    for name in ("bf16", "fp16"):
        if name == "bf16" and not native_bf16:
            continue
        dtype = amp_dtype(name, torch.device("cuda"))
        low = {k: v.item() for k, v in _step(dtype, device="cuda")[0].items()}
        for key in ("loss", "id", "triplet"):
            assert abs(fp32[key] - low[key]) <= 0.05 * abs(fp32[key]) + 0.02, (name, key, fp32, low)


@pytest.mark.gpu
def test_auto_amp_is_bf16_only_where_the_gpu_has_it_natively():
    native_bf16 = torch.cuda.get_device_capability()[0] >= 8  # Ampere and later
    assert amp_dtype("auto", torch.device("cuda")) == (torch.bfloat16 if native_bf16 else torch.float16)
