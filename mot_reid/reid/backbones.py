"""ReID backbones: torchvision ResNets/ResNeXt, ResNet50-IBN-a and OSNet, as feature-map trunks.

`build_backbone(name, last_stride, pretrained)` returns a module mapping images (N,3,H,W) to a
feature map (N,C,H/s,W/s) with s = 16 (last_stride 1) or 32 (last_stride 2), plus C. The pooling
and the head live in `model.py`. OSNet (`osnet_x0_25` ... `osnet_x1_0`, the network of
`mot_reid/reid/osnet.py`) ends at its conv5 map, stride 16 (so only last_stride 1); its own fc
embedding and classifier are left out: the BoT head takes their place.

`pretrained`: `imagenet` (torchvision's weights API; IBN-a from the IBN-Net authors' release; none
for OSNet), `none` (random init) or a path to a state_dict: torchvision or torchreid key names
(`module.` prefixes and the old head `fc.*` / `classifier.*` are dropped), a torchreid model-zoo
file such as `osnet_x0_25_msmt17.pth`, or a mot-reid checkpoint (its backbone weights). One log
line reports how many tensors were loaded, missing and unexpected; nothing matching is an error.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from mot_reid.errors import UserError
from mot_reid.log import logger
from mot_reid.reid.osnet import WIDTHS, OSNet

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
OSNETS = tuple(f"osnet_{w}" for w in WIDTHS)  # osnet_x1_0, osnet_x0_75, osnet_x0_5, osnet_x0_25
BACKBONES = (*TORCHVISION, "resnet50_ibn_a", *OSNETS)
HEAD_PREFIXES = ("fc.", "classifier.")  # an ImageNet / torchreid classifier head: never part of a trunk


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


class OSNetTrunk(nn.Module):
    """OSNet up to its conv5 map, or with `embedding_layer` up to its fc embedding (returned as a 1x1 map,
    so the BoT head's pooling leaves it as it is). Module names equal torchreid's keys: zoo files load by name."""

    def __init__(self, net: OSNet, embedding_layer: bool = False):
        super().__init__()
        self.conv1, self.maxpool = net.conv1, net.maxpool
        self.conv2, self.conv3, self.conv4, self.conv5 = net.conv2, net.conv3, net.conv4, net.conv5
        self.fc = net.fc if embedding_layer else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv5(self.conv4(self.conv3(self.conv2(self.maxpool(self.conv1(x))))))
        if self.fc is None:
            return x
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))[:, :, None, None]


def set_last_stride(net: ResNet, stride: int) -> None:
    """Stride of layer4's first block (and its shortcut): 1 doubles the final map's height and width."""
    block = net.layer4[0]
    if isinstance(block, Bottleneck):  # torchvision v1.5: the stride sits on the 3x3 conv
        block.conv2.stride = (stride, stride)
    elif isinstance(block, BasicBlock):
        block.conv1.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


def build_backbone(name: str, last_stride: int = 1, pretrained: str = "none",
                   embedding_layer: bool = False) -> tuple[nn.Module, int]:
    """The trunk for `name` and its output channel count."""
    if name not in BACKBONES:
        raise UserError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if last_stride not in (1, 2):
        raise UserError(f"model.last_stride must be 1 or 2, got {last_stride!r}")
    if pretrained == "required":  # a shipped recipe whose weights file only the user can name
        raise UserError("this recipe needs its starting weights: add --set model.pretrained=PATH "
                        "(e.g. osnet_x0_25_msmt17.pth)")
    if name in OSNETS:
        if last_stride != 1:
            raise UserError(f"{name} ends at stride 16 already; model.last_stride must be 1, got {last_stride}")
        if pretrained == "imagenet":
            raise UserError(f"no ImageNet download for {name}; set model.pretrained to a torchreid OSNet file "
                            "(e.g. osnet_x0_25_msmt17.pth) or none")
        widths = WIDTHS[name.removeprefix("osnet_")]
        net = OSNet(widths)
        trunk: nn.Module = OSNetTrunk(net, embedding_layer)
        channels = net.feature_dim if embedding_layer else widths[-1]
    else:
        if embedding_layer:
            raise UserError(f"model.embedding_layer is for OSNet backbones; {name} has none to keep")
        net = resnet50_ibn_a() if name == "resnet50_ibn_a" else getattr(torchvision.models, TORCHVISION[name][0])()
        set_last_stride(net, last_stride)
        trunk, channels = Trunk(net), net.fc.in_features
        if pretrained == "imagenet":
            load_into(trunk, imagenet_state_dict(name), f"ImageNet weights of {name}")
    if pretrained not in ("none", "", None, "imagenet"):
        load_into(trunk, read_state_dict(pretrained), str(pretrained))
    return trunk, channels


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
    except Exception:  # noqa: BLE001 - any unreadable file is the user's to fix
        # torch's own text is a multi-line weights_only explanation with terminal escapes.
        raise UserError(f"cannot read weights {path}: damaged, or not a state dict (a pickled model such as YOLO "
                        "weights?); model.pretrained takes a torchvision/torchreid state dict or a mot-reid "
                        "checkpoint") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = {k[len("backbone."):]: v for k, v in state["model"].items() if k.startswith("backbone.")}
    elif isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} does not hold a state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_into(trunk: nn.Module, state: dict, source: str) -> dict:
    """Load every tensor of `state` whose name and shape fit the trunk (the old head dropped) and log
    one line of counts; returns them. Nothing fitting, or a fitting name of another shape, is an error."""
    own = trunk.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(HEAD_PREFIXES)}
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if wrong:
        k = wrong[0]
        raise UserError(f"weights {source} do not fit this backbone: {len(wrong)} keys of another shape "
                        f"(e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})")
    loaded = [k for k in own if k in state]
    if not loaded:
        example = next(iter(state), "none")
        raise UserError(f"weights {source} do not fit this backbone: none of its {len(state)} keys "
                        f"(e.g. {example}) names a {type(trunk).__name__} weight")
    counts = {"loaded": len(loaded), "missing": len(own) - len(loaded), "unexpected": len(set(state) - set(own))}
    trunk.load_state_dict(state, strict=False)
    logger.info("pretrained %s: %d tensors loaded, %d missing, %d unexpected (old classifier dropped)",
                source, counts["loaded"], counts["missing"], counts["unexpected"])
    return counts
