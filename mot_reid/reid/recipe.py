"""The ReID training/evaluation recipe: dataclasses whose defaults are the Bag-of-Tricks
reference values (its `configs/softmax_triplet_with_center.yml`).

Recipes under `configs/reid/` override a few keys each (`_base_` inheritance); `--set` overrides
any key from the command line, e.g. `--set solver.epochs=10 model.backbone=resnet18`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trackers.config import check_ranges


@dataclass
class ModelConfig:
    # resnet18/34/50/101/152, resnext50, resnet50_ibn_a, osnet_x0_25/x0_5/x0_75/x1_0
    backbone: str = "resnet50"
    # 1 keeps a 16x8 final feature map for 256x128 input (a paper trick); 2 is torchvision's default.
    last_stride: Literal[1, 2] = 1
    # imagenet (torchvision weights API; downloads once), none (random init), or a path to a state_dict
    # (torchvision / torchreid keys, a torchreid model-zoo file, a mot-reid checkpoint).
    pretrained: str = "imagenet"
    # bnneck: BN between the pooled (pre-BN) feature and a bias-free classifier; none: the plain baseline.
    neck: Literal["bnneck", "none"] = "bnneck"
    # OSNet only: keep the pretrained model's own embedding layer (fc 512 + BN + ReLU) between the pool
    # and the BNNeck, so a fine-tune starts from exactly the feature the zoo model gives.
    embedding_layer: bool = False


@dataclass
class InputConfig:
    size: tuple[int, int] = (256, 128)  # height, width
    flip_p: float = 0.5
    padding: int = 10
    # Random erasing (Zhong et al.): probability, area range, minimum aspect ratio; 0 disables it.
    erasing_p: float = 0.5
    erasing_area: tuple[float, float] = (0.02, 0.4)
    erasing_min_aspect: float = 0.3
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass
class DataConfig:
    # market1501, dukemtmc, msmt17, folder (PID_cCAM_*.jpg files), or mot2reid (output of `mot-reid data mot2reid`)
    dataset: str = "market1501"
    ids_per_batch: int = 16  # P
    images_per_id: int = 4  # K
    # What one epoch is (mot_reid/reid/sampler.py). identity: every identity once per epoch with K
    # images, ceil(#ids / P) batches (Market-1501: 47). reference: the Bag-of-Tricks code's
    # RandomIdentitySampler epoch, each identity's images cut into chunks of K and batches drawn until
    # fewer than P identities have chunks left (Market-1501: ~200 batches); it reproduces the paper's
    # iteration count, so its 120-epoch schedule with steps at 40/70 takes ~4x the optimizer steps.
    sampler: Literal["identity", "reference"] = "identity"
    test_batch_size: int = 128
    num_workers: int = 4
    # Training images decoded once into a uint8 cache and augmented batch-wise on the training device
    # (mot_reid/reid/device_data.py) instead of per image in DataLoader workers. auto: on for CUDA.
    device_cache: Literal["auto", "on", "off"] = "auto"


@dataclass
class LossConfig:
    id_loss: bool = True
    label_smoothing: float = 0.1  # 0 gives plain cross-entropy
    triplet: bool = True
    margin: float | None = 0.3  # null: soft-margin triplet
    center: bool = True
    center_weight: float = 5e-4
    center_lr: float = 0.5


@dataclass
class SolverConfig:
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    bias_lr_factor: float = 1.0
    # LR multiplier of the freshly initialised head (BNNeck and classifier): a fine-tune from a pretrained
    # backbone lowers `lr`, and the new classifier would then barely move from its near-zero init.
    head_lr_factor: float = 1.0
    weight_decay_bias: float = 5e-4
    momentum: float = 0.9  # sgd only
    epochs: int = 120
    # Warmup is stepped per epoch: lr * (warmup_factor -> 1) linearly over warmup_epochs; 0 disables it.
    warmup_epochs: int = 10
    warmup_factor: float = 0.01
    milestones: tuple[int, ...] = (40, 70)
    gamma: float = 0.1
    checkpoint_every: int = 40
    eval_every: int = 40
    seed: int = 0

    def __post_init__(self):
        # torch would refuse some of these with a traceback mid-setup; others would train silently wrong.
        check_ranges(self, {
            "lr": (lambda v: v > 0, "> 0"),
            "weight_decay": (lambda v: v >= 0, ">= 0"),
            "weight_decay_bias": (lambda v: v >= 0, ">= 0"),
            "bias_lr_factor": (lambda v: v > 0, "> 0"),
            "head_lr_factor": (lambda v: v > 0, "> 0"),
            "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
            "epochs": (lambda v: v >= 1, ">= 1"),
            "warmup_epochs": (lambda v: v >= 0, ">= 0"),
            "warmup_factor": (lambda v: 0 < v <= 1, "in (0, 1]"),
            "gamma": (lambda v: v > 0, "> 0"),
            "checkpoint_every": (lambda v: v >= 0, ">= 0 (0: only at the end)"),
            "eval_every": (lambda v: v >= 0, ">= 0 (0: never)"),
        })


@dataclass
class RuntimeConfig:
    # Switched by device, never by a code fork: auto means on for CUDA, off for CPU.
    device: str = "auto"
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    compile: bool = False


@dataclass
class TestConfig:
    # before: pooled pre-BN feature (what the tracker uses); after: post-BN (the paper's test feature).
    feat: Literal["before", "after"] = "after"
    rerank: bool = False
    rerank_k1: int = 20
    rerank_k2: int = 6
    rerank_lambda: float = 0.3

    def __post_init__(self):
        # Checked when the recipe loads, not at the first evaluation of a long training run.
        if self.rerank_k1 < 1 or self.rerank_k2 < 1:
            raise ValueError(f"test.rerank_k1 and test.rerank_k2 must be at least 1, got {self.rerank_k1}, "
                             f"{self.rerank_k2}")


@dataclass
class ReIDRecipe:
    model: ModelConfig = field(default_factory=ModelConfig)
    input: InputConfig = field(default_factory=InputConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    test: TestConfig = field(default_factory=TestConfig)
