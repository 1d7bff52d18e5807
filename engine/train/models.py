"""Model registry: the classic course CNNs and torchvision architectures, by name.

Every model is wrapped in :class:`ImageClassifier`, which takes uint8-derived images in
[0, 1], normalises them and adapts grayscale input to 3-channel backbones. Keeping the
preprocessing inside the module makes a checkpoint (and an export) self-contained.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from balancelab.engine.train.deskew import Deskew

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# torchvision's Inception v3 weights expect (x - 0.5) / 0.5 (what its transform_input recreates)
PRETRAINED_NORM = {"inception_v3": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}


class ModelError(ValueError):
    """Unknown model, bad input size, or weights that do not fit."""


# --- the classic course networks -------------------------------------------------------------

class MnistClassic(nn.Module):
    """Two 5x5 conv + max-pool blocks, dropout, two dense layers (the classic MNIST tutorial net)."""

    def __init__(self, num_classes: int, in_channels: int, size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Dropout(0.25),
        )
        side = size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * side * side, 128), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class Tiny2Conv(nn.Module):
    """Two 5x5 conv layers (16 and 32 channels) and one linear layer: the speed-benchmark net."""

    def __init__(self, num_classes: int, in_channels: int, size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * (size // 4) ** 2, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class CifarClassic(nn.Module):
    """3x3 conv + BatchNorm blocks (32-64-128), max-pool between, global pooling head."""

    def __init__(self, num_classes: int, in_channels: int, size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for cout in (32, 64, 128):
            layers += _conv_bn(cin, cout) + _conv_bn(cout, cout) + [nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers, nn.Dropout(0.2))
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class AlexNetStyle(nn.Module):
    """AlexNet's five-conv / three-dense shape, scaled for 64 px inputs."""

    def __init__(self, num_classes: int, in_channels: int, size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 5, stride=2, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(128, 192, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(192, 192, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(192, 128, 3, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveMaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.5), nn.Linear(128 * 4, 512), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(512, 256), nn.ReLU(inplace=True), nn.Linear(256, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class VggStyle(nn.Module):
    """A deeper plain CNN in the VGG pattern: stacks of 3x3 conv + BN, doubling width per stage."""

    def __init__(self, num_classes: int, in_channels: int, size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for cout, repeats in ((64, 2), (128, 2), (256, 3), (512, 3)):
            for _ in range(repeats):
                layers += _conv_bn(cin, cout)
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.4), nn.Linear(512, 256),
            nn.ReLU(inplace=True), nn.Linear(256, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


# --- registry ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    default_size: int
    min_size: int
    torchvision: bool
    builder: Callable | None = None  # small nets only
    size_multiple: int = 1
    aux_loss_weight: float = 0.0  # weight of an auxiliary classifier's loss in training (0 = none)


SMALL_NETS = {
    "mnist-classic": ModelSpec("mnist-classic", "2 conv 5x5 + max-pool + dropout, 2 dense (the MNIST classic)", 28, 8, False, MnistClassic, 4),
    "tiny-2conv": ModelSpec("tiny-2conv", "2 conv 5x5 (16, 32 ch) + one linear layer; fastest, for benchmarks and smoke runs", 28, 8, False, Tiny2Conv, 4),
    "cifar-classic": ModelSpec("cifar-classic", "3x3 conv + BatchNorm blocks 32-64-128 (the CIFAR classic)", 32, 8, False, CifarClassic),
    "alexnet-style": ModelSpec("alexnet-style", "AlexNet-shaped 5 conv + 3 dense, for 64 px inputs", 64, 16, False, AlexNetStyle),
    "vgg-style": ModelSpec("vgg-style", "deeper plain VGG-pattern CNN (10 conv + BN)", 64, 16, False, VggStyle),
}
TORCHVISION_NETS = {
    "resnet18": "torchvision ResNet-18 (11.7 M params)",
    "resnet50": "torchvision ResNet-50 (25.6 M params)",
    "vgg16": "torchvision VGG-16 (138 M params)",
    "densenet121": "torchvision DenseNet-121 (8.0 M params)",
    "mobilenet_v3_small": "torchvision MobileNetV3-Small (2.5 M params), fast on CPU",
    "efficientnet_b0": "torchvision EfficientNet-B0 (5.3 M params)",
    "squeezenet1_0": "torchvision SqueezeNet 1.0 (1.2 M params)",
    "alexnet": "torchvision AlexNet (61 M params)",
}
MODELS: dict[str, ModelSpec] = dict(SMALL_NETS)
for _name, _desc in TORCHVISION_NETS.items():
    MODELS[_name] = ModelSpec(_name, _desc, 224, 64 if _name == "alexnet" else 32, True)
# the course's Inception v3: 299 px, and in training its auxiliary classifier adds 0.4 x its loss
MODELS["inception_v3"] = ModelSpec(
    "inception_v3", "torchvision Inception v3 (27 M params), 299 px; auxiliary classifier: loss = main + 0.4 x aux "
    "in training, ignored in evaluation and export", 299, 75, True, aux_loss_weight=0.4)


def model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}") from None


def _head_path(name: str) -> str:
    if name.startswith(("resnet", "inception")):
        return "fc"
    if name.startswith("densenet"):
        return "classifier"
    if name.startswith("squeezenet"):
        return "classifier.1"
    return "classifier.-1"  # vgg, alexnet, mobilenet, efficientnet: last layer of the classifier


def _get_submodule(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    parts = path.split(".")
    parent = model
    for p in parts[:-1]:
        parent = parent[int(p)] if p.lstrip("-").isdigit() else getattr(parent, p)
    return parent, parts[-1]


def _replace_head(model: nn.Module, name: str, num_classes: int) -> nn.Module:
    parent, last = _get_submodule(model, _head_path(name))
    old = parent[int(last)] if last.lstrip("-").isdigit() else getattr(parent, last)
    if isinstance(old, nn.Conv2d):  # squeezenet classifies with a 1x1 conv
        new = nn.Conv2d(old.in_channels, num_classes, kernel_size=1)
    else:
        new = nn.Linear(old.in_features, num_classes)
    if last.lstrip("-").isdigit():
        parent[int(last)] = new
    else:
        setattr(parent, last, new)
    if hasattr(model, "num_classes"):
        model.num_classes = num_classes
    return new


def cached_weights_path(name: str) -> str:
    """Where torchvision's own downloader would have stored the default ImageNet weights."""
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))


def load_weights_only(path: str):
    """``torch.load`` that never executes code from the file and keeps torch's notes to developers
    (e.g. "Detected pickle protocol 4") off the user's screen: callers turn failures into one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.load(path, map_location="cpu", weights_only=True)


def load_state_dict_file(path: str) -> dict:
    """Load a weights file safely (never executes code from it)."""
    if not os.path.isfile(path):
        what = "is not a regular file" if os.path.exists(path) else "not found"
        raise ModelError(f"pretrained weights file {what}: {path}")
    try:
        obj = load_weights_only(path)
    except Exception as exc:  # pickle errors, truncation, unsafe globals
        raise ModelError(f"cannot read weights file {path}: {str(exc).splitlines()[0]}") from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path} does not contain a state_dict of tensors")
    return obj


#: --pretrained values that name torchvision's cached ImageNet weights rather than a file
CACHED_WEIGHTS = ("imagenet", "default", "cache")


def _build_torchvision(name: str, num_classes: int, pretrained: str | None) -> nn.Module:
    import torchvision

    model = _inception(torchvision) if name == "inception_v3" else torchvision.models.get_model(name, weights=None)
    if pretrained:
        path = cached_weights_path(name) if pretrained in CACHED_WEIGHTS else pretrained
        if pretrained in CACHED_WEIGHTS and not os.path.isfile(path):
            raise ModelError(
                f"ImageNet weights for {name} are not in the torch cache ({path}); "
                f"copy the file there or pass --pretrained PATH to a local weights file"
            )
        state = load_state_dict_file(path)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).split("\n")[0]
            raise ModelError(f"weights in {path} do not fit {name}: {first}") from None
    _replace_head(model, name, num_classes)
    if getattr(model, "AuxLogits", None) is not None:
        model.AuxLogits.fc = nn.Linear(model.AuxLogits.fc.in_features, num_classes)
    return model


def _inception(torchvision) -> nn.Module:
    """Inception v3 with its auxiliary classifier, whose pooling also accepts inputs below 299 px."""
    from torchvision.models import inception as tv

    class AnySizeAux(tv.InceptionAux):
        """torchvision's InceptionAux (same weights); below 299 px its 17x17 input is smaller, so
        the fixed 5x5/3 average pooling would fail: pool adaptively to the same 5x5 instead."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if min(x.shape[-2:]) >= 17:
                x = nn.functional.avg_pool2d(x, kernel_size=5, stride=3)
            else:
                x = nn.functional.adaptive_avg_pool2d(x, 5)
            x = self.conv1(self.conv0(x))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    blocks = [tv.BasicConv2d, tv.InceptionA, tv.InceptionB, tv.InceptionC, tv.InceptionD, tv.InceptionE, AnySizeAux]
    return torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True, inception_blocks=blocks)


def main_and_aux(output) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A model's training output as (logits, auxiliary logits or None): Inception v3 returns both
    in training mode (InceptionOutputs); every model returns plain logits in evaluation mode."""
    if isinstance(output, torch.Tensor):
        return output, None
    logits, aux = output
    return logits, aux


class ImageClassifier(nn.Module):
    """[Deskewing +] normalisation + channel adaptation + backbone. Input: float images in [0, 1], NCHW."""

    def __init__(self, backbone: nn.Module, in_channels: int, backbone_channels: int,
                 mean: tuple[float, ...], std: tuple[float, ...], deskew: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.in_channels = in_channels
        self.backbone_channels = backbone_channels
        self.deskew = Deskew() if deskew else None  # no weights: the checkpoint records the choice
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deskew is not None:
            x = self.deskew(x)
        if self.backbone_channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.backbone((x - self.mean) / self.std)


def build_model(name: str, num_classes: int, in_channels: int, image_size: int,
                pretrained: str | None = None, mean: tuple[float, ...] | None = None,
                std: tuple[float, ...] | None = None, deskew: bool = False) -> ImageClassifier:
    spec = model_spec(name)
    if num_classes < 2:
        raise ModelError("a classifier needs at least 2 classes")
    if image_size < spec.min_size:
        raise ModelError(f"{name} needs images of at least {spec.min_size} px (got {image_size})")
    if spec.torchvision:
        backbone = _build_torchvision(name, num_classes, pretrained)
        backbone_channels = 3
        if pretrained:
            mean, std = PRETRAINED_NORM.get(name, (IMAGENET_MEAN, IMAGENET_STD))
    else:
        if pretrained:
            raise ModelError(f"{name} is trained from scratch; pretrained weights (--pretrained) apply to torchvision models only")
        backbone = spec.builder(num_classes, in_channels, image_size)
        backbone_channels = in_channels
    norm_channels = backbone_channels
    mean = tuple(mean) if mean else (0.5,) * norm_channels
    std = tuple(std) if std else (0.25,) * norm_channels
    if len(mean) != norm_channels:  # grayscale stats on a 3-channel backbone
        mean, std = (mean[0],) * norm_channels, (std[0],) * norm_channels
    return ImageClassifier(backbone, in_channels, backbone_channels, mean, std, deskew)


def head_parameters(model: ImageClassifier, name: str) -> list[nn.Parameter]:
    """Parameters of the classification head (the only ones trained in head-only transfer)."""
    spec = model_spec(name)
    if not spec.torchvision:
        return list(model.backbone.classifier.parameters())
    parent, last = _get_submodule(model.backbone, _head_path(name))
    head = parent[int(last)] if last.lstrip("-").isdigit() else getattr(parent, last)
    aux = getattr(model.backbone, "AuxLogits", None)  # the auxiliary classifier's own head trains with it
    return list(head.parameters()) + (list(aux.fc.parameters()) if aux is not None else [])


def freeze_all_but_head(model: ImageClassifier, name: str) -> None:
    head = {id(p) for p in head_parameters(model, name)}
    for p in model.parameters():
        p.requires_grad_(id(p) in head)
