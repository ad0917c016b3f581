"""ReID backbones: torchvision ResNets/ResNeXt and ResNet50-IBN-a, as feature-map trunks.

`build_backbone(name, last_stride, pretrained)` returns a module mapping images (N,3,H,W) to a
feature map (N,C,H/s,W/s) with s = 16 (last_stride 1) or 32 (last_stride 2), plus C. The pooling
and the head live in `model.py`.

`pretrained`: `imagenet` (torchvision's weights API; IBN-a from the IBN-Net authors' release),
`none` (random init) or a path to a state_dict with torchvision's key names (a classifier `fc.*`
in it is ignored; a mot-reid checkpoint is accepted too and its backbone weights are used).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from mot_reid.errors import UserError

# name -> (torchvision constructor name, weights enum name). IBN-a is built here instead.
TORCHVISION = {
    "resnet18": ("resnet18", "ResNet18_Weights"),
    "resnet34": ("resnet34", "ResNet34_Weights"),
    "resnet50": ("resnet50", "ResNet50_Weights"),
    "resnet101": ("resnet101", "ResNet101_Weights"),
    "resnet152": ("resnet152", "ResNet152_Weights"),
    "resnext50": ("resnext50_32x4d", "ResNeXt50_32X4D_Weights"),
}
IBN_A_URL = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/resnet50_ibn_a-d9d0bb7b.pth"
BACKBONES = (*TORCHVISION, "resnet50_ibn_a")


class IBN(nn.Module):
    """Instance-batch normalisation (Pan et al., ECCV 2018): InstanceNorm on the first half of the
    channels (style invariance), BatchNorm on the rest (content). Attribute names `IN`/`BN` match
    the IBN-Net release weights."""

    def __init__(self, channels: int, in_ratio: float = 0.5):
        super().__init__()
        self.half = int(channels * in_ratio)
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(channels - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, rest = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat([self.IN(first.contiguous()), self.BN(rest.contiguous())], dim=1)


def resnet50_ibn_a() -> ResNet:
    """torchvision's ResNet50 whose bottlenecks in layer1-3 normalise after their first conv with
    IBN instead of BN (layer4 keeps BN, so the final features stay discriminative)."""
    net = torchvision.models.resnet50(weights=None)
    for layer in (net.layer1, net.layer2, net.layer3):
        for block in layer:
            block.bn1 = IBN(block.bn1.num_features)
    # IBN-Net initialises IN like BN: weight 1, bias 0 (nn.InstanceNorm2d's default already).
    return net


class Trunk(nn.Module):
    """A ResNet without its average pooling and classifier: images -> last feature map."""

    def __init__(self, net: ResNet):
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def set_last_stride(net: ResNet, stride: int) -> None:
    """Stride of layer4's first block (and its shortcut): 1 doubles the final map's height and width."""
    block = net.layer4[0]
    if isinstance(block, Bottleneck):  # torchvision v1.5: the stride sits on the 3x3 conv
        block.conv2.stride = (stride, stride)
    elif isinstance(block, BasicBlock):
        block.conv1.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


def build_backbone(name: str, last_stride: int = 1, pretrained: str = "none") -> tuple[Trunk, int]:
    """The trunk for `name` and its output channel count."""
    if name not in BACKBONES:
        raise UserError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if last_stride not in (1, 2):
        raise UserError(f"model.last_stride must be 1 or 2, got {last_stride!r}")
    net = resnet50_ibn_a() if name == "resnet50_ibn_a" else getattr(torchvision.models, TORCHVISION[name][0])()
    if pretrained == "imagenet":
        load_into(net, imagenet_state_dict(name), f"ImageNet weights of {name}")
    elif pretrained not in ("none", "", None):
        load_into(net, read_state_dict(pretrained), str(pretrained))
    set_last_stride(net, last_stride)
    channels = net.fc.in_features
    return Trunk(net), channels


def imagenet_url(name: str) -> str:
    """Where the ImageNet weights of `name` come from (torchvision's weights API for its models)."""
    if name == "resnet50_ibn_a":
        return IBN_A_URL
    weights = getattr(torchvision.models, TORCHVISION[name][1]).IMAGENET1K_V1
    return weights.url


def imagenet_state_dict(name: str) -> dict:
    """Download (once, into torch's hub cache) the ImageNet weights of `name`; one-line error offline."""
    try:
        if name == "resnet50_ibn_a":
            state = torch.hub.load_state_dict_from_url(IBN_A_URL, progress=True, weights_only=True)
        else:
            weights = getattr(torchvision.models, TORCHVISION[name][1]).IMAGENET1K_V1
            state = weights.get_state_dict(progress=True, weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
        reason = str(getattr(exc, "reason", exc)).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"cannot download ImageNet weights for {name} from {imagenet_url(name)} ({reason}); "
            "set model.pretrained=none or to a local state_dict file"
        ) from None
    return state


def read_state_dict(path: str | Path) -> dict:
    """A state_dict from `path` (weights_only); unwraps `state_dict`/`model` wrappers and DDP prefixes.
    A mot-reid checkpoint gives its backbone's weights."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"pretrained weights not found: {path} (model.pretrained takes imagenet, none or a path)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"cannot read weights {path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = {k[len("backbone."):]: v for k, v in state["model"].items() if k.startswith("backbone.")}
    elif isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} does not hold a state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_into(net: ResNet, state: dict, source: str) -> None:
    """Load backbone weights strictly (except the ImageNet classifier), or say what does not fit."""
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            shapes = f"{tuple(state[k].shape)} vs {tuple(own[k].shape)}"
            problems.append(f"{len(wrong)} of another shape (e.g. {k}: {shapes})")
        raise UserError(f"weights {source} do not fit this backbone: {'; '.join(problems)} keys")
    net.load_state_dict(state, strict=False)
