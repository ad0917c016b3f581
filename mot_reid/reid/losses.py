"""The three Bag-of-Tricks losses: label-smoothed ID loss, batch-hard triplet, center loss.

Distances are computed in float32 whatever the autocast dtype, so mixed precision cannot
underflow the triplet/center terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mot_reid.errors import UserError
from mot_reid.reid.recipe import LossConfig


def euclidean_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N, M) Euclidean distances; the clamp keeps sqrt's gradient finite at zero distance."""
    x, y = x.float(), y.float()
    d2 = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1).unsqueeze(0) - 2.0 * x @ y.t()
    return d2.clamp(min=1e-12).sqrt()


def hard_example_distances(feat: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each anchor: distance to its farthest positive and to its nearest negative (both (N,)).
    An anchor without negatives gets +inf for the latter, which makes its loss 0."""
    dist = euclidean_distances(feat, feat)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    hardest_pos = dist.masked_fill(~same, float("-inf")).max(1).values
    hardest_neg = dist.masked_fill(same, float("inf")).min(1).values
    return hardest_pos, hardest_neg


def batch_hard_triplet_loss(feat: torch.Tensor, labels: torch.Tensor, margin: float | None = 0.3) -> torch.Tensor:
    """Hermans et al.'s batch-hard triplet loss: mean over anchors of
    max(0, d(a,p*) - d(a,n*) + margin), or the soft margin log(1 + exp(d(a,p*) - d(a,n*))) when
    `margin` is None."""
    pos, neg = hard_example_distances(feat, labels)
    gap = pos - neg
    if margin is None:
        return F.softplus(gap).mean()
    return F.relu(gap + margin).mean()


class CenterLoss(nn.Module):
    """Wen et al.'s center loss as Bag-of-Tricks uses it: sum over the batch of the squared distance
    of each feature to its class center, divided by the batch size. The centers are parameters,
    updated by their own optimizer."""

    def __init__(self, num_classes: int, feat_dim: int):
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))

    def forward(self, feat: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        diff = feat.float() - self.centers[labels].float()
        return diff.pow(2).sum(1).clamp(min=1e-12, max=1e12).mean()


class ReIDLoss(nn.Module):
    """ID + triplet + weighted center loss, each switchable by the recipe. Returns the total and
    the unweighted parts (for logging)."""

    def __init__(self, cfg: LossConfig, num_classes: int, feat_dim: int):
        super().__init__()
        if not (cfg.id_loss or cfg.triplet or cfg.center):
            raise UserError("the recipe turns every loss off (loss.id_loss, loss.triplet, loss.center)")
        self.cfg = cfg
        self.id_loss = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.center = CenterLoss(num_classes, feat_dim) if cfg.center else None

    def forward(self, logits: torch.Tensor, feat: torch.Tensor, labels: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts: dict[str, torch.Tensor] = {}
        total = feat.new_zeros((), dtype=torch.float32)
        if self.cfg.id_loss:
            parts["id"] = self.id_loss(logits.float(), labels)
            total = total + parts["id"]
        if self.cfg.triplet:
            parts["triplet"] = batch_hard_triplet_loss(feat, labels, self.cfg.margin)
            total = total + parts["triplet"]
        if self.center is not None:
            parts["center"] = self.center(feat, labels)
            total = total + self.cfg.center_weight * parts["center"]
        return total, parts
