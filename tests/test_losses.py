"""Loss values against hand-computed ones: batch-hard triplet (hard and soft margin), center loss,
label-smoothed cross-entropy, and the center optimizer's gradient rescaling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mot_reid.reid.losses import CenterLoss, ReIDLoss, batch_hard_triplet_loss, hard_example_distances
from mot_reid.reid.recipe import LossConfig
from mot_reid.reid.train import train_step

# Four points on a line at x = 0, 1, 3, 6; identities 0, 0, 1, 1.
FEAT = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [6.0, 0.0]])
LABELS = torch.tensor([0, 0, 1, 1])
# By hand: hardest positive / nearest negative per anchor: (1, 3), (1, 2), (3, 2), (3, 5).
HARD_POS = [1.0, 1.0, 3.0, 3.0]
HARD_NEG = [3.0, 2.0, 2.0, 5.0]


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_hard_mining_picks_farthest_positive_and_nearest_negative():
    pos, neg = hard_example_distances(FEAT, LABELS)
    assert pos.tolist() == pytest.approx(HARD_POS, abs=1e-5)
    assert neg.tolist() == pytest.approx(HARD_NEG, abs=1e-5)


def test_triplet_with_margin():
    # Only anchor 3.0 violates the margin: 3 - 2 + 0.3 = 1.3; the mean over 4 anchors is 0.325.
    assert batch_hard_triplet_loss(FEAT, LABELS, 0.3).item() == pytest.approx(0.325, abs=1e-5)
    assert batch_hard_triplet_loss(FEAT, LABELS, 0.0).item() == pytest.approx(0.25, abs=1e-5)


def test_soft_margin_triplet():
    expected = (softplus(1 - 3) + softplus(1 - 2) + softplus(3 - 2) + softplus(3 - 5)) / 4
    assert batch_hard_triplet_loss(FEAT, LABELS, None).item() == pytest.approx(expected, abs=1e-5)


def test_triplet_gradient_is_finite_for_identical_features():
    feat = torch.zeros(4, 3, requires_grad=True)
    batch_hard_triplet_loss(feat, LABELS, 0.3).backward()
    assert torch.isfinite(feat.grad).all()


def test_center_loss_is_mean_squared_distance_to_own_center():
    loss = CenterLoss(num_classes=2, feat_dim=2)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    feat = torch.tensor([[1.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    # ||(1,0)-(0,0)||^2 = 1, ||(0,2)-(1,1)||^2 = 2, ||(2,2)-(1,1)||^2 = 2 -> sum 5 over a batch of 3.
    assert loss(feat, torch.tensor([0, 1, 1])).item() == pytest.approx(5 / 3, abs=1e-6)


def test_label_smoothed_cross_entropy_matches_hand_value():
    cfg = LossConfig(label_smoothing=0.1, triplet=False, center=False)
    loss, parts = ReIDLoss(cfg, num_classes=3, feat_dim=2)(torch.tensor([[2.0, 0.0, 0.0]]), FEAT[:1],
                                                           torch.tensor([0]))
    log_z = math.log(math.exp(2) + 2)
    log_p = [2 - log_z, -log_z, -log_z]
    target = [0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3]  # (1 - eps) one-hot + eps / classes
    expected = -sum(t * lp for t, lp in zip(target, log_p, strict=True))
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert parts["id"].item() == pytest.approx(expected, abs=1e-6)


def test_total_weights_the_center_term():
    cfg = LossConfig(center_weight=0.5)
    criterion = ReIDLoss(cfg, num_classes=2, feat_dim=2)
    logits = torch.randn(4, 2)
    total, parts = criterion(logits, FEAT, LABELS)
    assert total.item() == pytest.approx((parts["id"] + parts["triplet"] + 0.5 * parts["center"]).item(), rel=1e-6)


class FixedOutputs(nn.Module):
    """A stand-in network whose outputs are its parameters: isolates the optimisers' arithmetic."""

    def __init__(self, logits: torch.Tensor, feat: torch.Tensor):
        super().__init__()
        self.logits, self.feat = nn.Parameter(logits), nn.Parameter(feat)

    def forward(self, images):
        return self.logits, self.feat


def test_center_sgd_moves_at_center_lr_despite_the_loss_weight():
    feat = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 1])
    net = FixedOutputs(torch.zeros(2, 2), feat)
    cfg = LossConfig(triplet=False, center=True, center_weight=5e-4, center_lr=0.5)
    criterion = ReIDLoss(cfg, num_classes=2, feat_dim=2)
    with torch.no_grad():
        criterion.center.centers.zero_()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.0)
    center_opt = torch.optim.SGD(criterion.center.parameters(), lr=cfg.center_lr)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    train_step(net, criterion, optimizer, center_opt, scaler, torch.zeros(2, 3, 4, 4), labels, None)
    # d/dc of mean ||x - c||^2 over a batch of 2 is -(x - c); SGD at 0.5 moves each center halfway.
    assert torch.allclose(criterion.center.centers.detach(), torch.tensor([[0.5, 0.0], [0.0, 1.0]]), atol=1e-6)
