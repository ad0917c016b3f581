"""OSNet (Zhou et al., "Omni-Scale Feature Learning for Person Re-Identification", ICCV 2019).

Written for this project so the widely used torchreid model-zoo files (`osnet_x0_25_msmt17.pth`,
...) load strictly: module names follow torchreid's state-dict keys. Each block mixes four
streams of 1..4 stacked depthwise 3x3 convolutions (receptive fields of growing size) with a
shared channel gate, so one block sees several scales at once.

Eval-mode `forward` returns the 512-D embedding of the fc head (Linear + BN + ReLU), the feature
torchreid extracts for matching; `classifier` exists only so the files load strictly.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from mot_reid.errors import UserError

# Stage widths per width multiplier; conv1's output width identifies the variant in a state dict.
WIDTHS = {"x1_0": (64, 256, 384, 512), "x0_75": (48, 192, 288, 384), "x0_5": (32, 128, 192, 256),
          "x0_25": (16, 64, 96, 128)}
INPUT_SIZE = (256, 128)  # H, W of the person crops the zoo models were trained on
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvBnRelu(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = relu

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(x, inplace=True) if self.relu else x


class LightConv3x3(nn.Module):
    """Pointwise 1x1 then depthwise 3x3: a cheap 3x3 receptive-field step."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, groups=cout, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv2(self.conv1(x))), inplace=True)


class ChannelGate(nn.Module):
    """Squeeze-and-excitation style gate shared by the four streams (aggregation gate)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x):
        g = F.adaptive_avg_pool2d(x, 1)
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(g), inplace=True)))
        return x * g


class OSBlock(nn.Module):
    def __init__(self, cin: int, cout: int, reduction: int = 4):
        super().__init__()
        mid = cout // reduction
        self.conv1 = ConvBnRelu(cin, mid, 1)
        self.conv2a = LightConv3x3(mid, mid)
        self.conv2b = nn.Sequential(*(LightConv3x3(mid, mid) for _ in range(2)))
        self.conv2c = nn.Sequential(*(LightConv3x3(mid, mid) for _ in range(3)))
        self.conv2d = nn.Sequential(*(LightConv3x3(mid, mid) for _ in range(4)))
        self.gate = ChannelGate(mid)
        self.conv3 = ConvBnRelu(mid, cout, 1, relu=False)
        self.downsample = ConvBnRelu(cin, cout, 1, relu=False) if cin != cout else None

    def forward(self, x):
        y = self.conv1(x)
        y = sum(self.gate(stream(y)) for stream in (self.conv2a, self.conv2b, self.conv2c, self.conv2d))
        y = self.conv3(y)
        identity = self.downsample(x) if self.downsample is not None else x
        return F.relu(y + identity, inplace=True)


def _stage(cin: int, cout: int, blocks: int, reduce: bool) -> nn.Sequential:
    layers: list[nn.Module] = [OSBlock(cin, cout)] + [OSBlock(cout, cout) for _ in range(blocks - 1)]
    if reduce:  # transition: 1x1 conv then 2x2 average pooling halves the resolution
        layers.append(nn.Sequential(ConvBnRelu(cout, cout, 1), nn.AvgPool2d(2, stride=2)))
    return nn.Sequential(*layers)


class OSNet(nn.Module):
    def __init__(self, widths=WIDTHS["x1_0"], num_classes: int = 1000, feature_dim: int = 512):
        super().__init__()
        c0, c1, c2, c3 = widths
        self.conv1 = ConvBnRelu(3, c0, 7, stride=2, padding=3)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = _stage(c0, c1, 2, reduce=True)
        self.conv3 = _stage(c1, c2, 2, reduce=True)
        self.conv4 = _stage(c2, c3, 2, reduce=False)
        self.conv5 = ConvBnRelu(c3, c3, 1)
        self.fc = nn.Sequential(nn.Linear(c3, feature_dim), nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim

    def feature_maps(self, x):
        x = self.maxpool(self.conv1(x))
        return self.conv5(self.conv4(self.conv3(self.conv2(x))))

    def forward(self, x):
        v = self.fc(torch.flatten(F.adaptive_avg_pool2d(self.feature_maps(x), 1), 1))
        return v if not self.training else self.classifier(v)


def fuse_batchnorm(model: OSNet) -> OSNet:
    """Fold every eval-mode BatchNorm into the conv / linear layer before it, in place (inference only).

    Same function up to float rounding (~1e-5), but one pass fewer over every activation: on CPU the
    80 BatchNorm layers cost about as much as the depthwise convolutions they follow.
    """
    if model.training:
        raise ValueError("fuse_batchnorm needs an eval-mode model (it bakes in the running statistics)")
    for module in model.modules():
        if isinstance(module, ConvBnRelu):
            module.conv, module.bn = fuse_conv_bn_eval(module.conv, module.bn), nn.Identity()
        elif isinstance(module, LightConv3x3):  # the BN follows the depthwise conv2
            module.conv2, module.bn = fuse_conv_bn_eval(module.conv2, module.bn), nn.Identity()
    linear, bn = model.fc[0], model.fc[1]
    if isinstance(bn, nn.BatchNorm1d):
        model.fc[0], model.fc[1] = fuse_linear_bn_eval(linear, bn), nn.Identity()
    return model


def _clean(state: dict) -> dict:
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return {k.removeprefix("module."): v for k, v in state.items()}


def is_osnet_state_dict(state: dict) -> bool:
    keys = _clean(state).keys() if isinstance(state, dict) else ()
    return "conv1.conv.weight" in keys and "conv2.0.conv2a.conv1.weight" in keys


def osnet_from_state_dict(state: dict) -> tuple[OSNet, str]:
    """Build the OSNet variant the state dict describes and load it strictly; returns (model, variant)."""
    state = _clean(state)
    c0 = state["conv1.conv.weight"].shape[0]
    variant = next((name for name, w in WIDTHS.items() if w[0] == c0), None)
    if variant is None:
        raise UserError(f"unknown OSNet width: conv1 has {c0} channels")
    num_classes = state["classifier.weight"].shape[0] if "classifier.weight" in state else 1000
    feature_dim = state["fc.0.weight"].shape[0] if "fc.0.weight" in state else 512
    model = OSNet(WIDTHS[variant], num_classes=num_classes, feature_dim=feature_dim)
    if "classifier.weight" not in state:  # an embedding-only export: keep the random classifier
        state = {**state, **{f"classifier.{k}": v for k, v in model.classifier.state_dict().items()}}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UserError(f"OSNet weights do not match the architecture: {str(exc).splitlines()[0]}") from None
    return model.eval(), variant


def load_osnet(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[OSNet, str]:
    """A torchreid-format OSNet file -> (eval-mode model on `device`, variant name such as 'x0_25')."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"ReID weights not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - corrupt or pickled-object files
        raise UserError(f"cannot read ReID weights {path}: {exc}") from None
    if not is_osnet_state_dict(state):
        raise UserError(f"{path} is not a torchreid OSNet state dict")
    model, variant = osnet_from_state_dict(state)
    return model.to(device), variant
