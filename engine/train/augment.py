"""Augmentation presets that work on whole uint8-derived batches, on the training device.

Images are decoded once into the cache; augmentation then happens on tensors. The
affine presets draw independent parameters per image in one ``grid_sample`` call, so
augmenting costs almost nothing next to the model. RandAugment / TrivialAugment use
torchvision ``transforms.v2`` per image (stronger, slower).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

AUGMENTATIONS = {
    "none": "no augmentation",
    "light": "random whole-pixel shift up to 10% (safe for digits, text, symbols)",
    "standard": "random shift, scale, rotation and horizontal flip (natural images)",
    "randaugment": "torchvision RandAugment per image",
    "trivialaugment": "torchvision TrivialAugmentWide per image",
}


@dataclass(frozen=True)
class AffinePreset:
    translate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    degrees: float = 0.0
    hflip: bool = False
    erase_prob: float = 0.0
    whole_pixels: bool = False  # a pure shift by whole pixels: no resampling blur that test images never have

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b = x.shape[0]
        if b == 0:
            return x
        dev = x.device

        def rand(*shape):
            return torch.rand(*shape, generator=generator).to(dev)

        angle = (rand(b) * 2 - 1) * math.radians(self.degrees)
        scale = self.scale[0] + rand(b) * (self.scale[1] - self.scale[0])
        tx, ty = ((rand(b) * 2 - 1) * self.translate * 2 for _ in range(2))  # grid units span 2
        if self.whole_pixels:  # 2 / side grid units per pixel: sample exactly at shifted pixel centres
            h, w = x.shape[-2:]
            tx, ty = torch.round(tx * w / 2) * 2 / w, torch.round(ty * h / 2) * 2 / h
        flip = torch.where(rand(b) < 0.5, -1.0, 1.0) if self.hflip else torch.ones(b, device=dev)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([
            torch.stack([cos * flip, -sin, tx], dim=1),
            torch.stack([sin * flip, cos, ty], dim=1),
        ], dim=1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros" if self.translate else "border",
                            align_corners=False)
        if self.erase_prob:
            out = random_erase(out, self.erase_prob, generator)
        return out


def random_erase(x: torch.Tensor, prob: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Erase one random rectangle (10-25% of the side) per image with probability ``prob``."""
    b, _, h, w = x.shape
    r = torch.rand(b, 5, generator=generator).to(x.device)
    eh, ew = (0.1 + 0.15 * r[:, 0]) * h, (0.1 + 0.15 * r[:, 1]) * w
    y0, x0 = r[:, 2] * (h - eh), r[:, 3] * (w - ew)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    mask = (ys >= y0.view(b, 1, 1)) & (ys < (y0 + eh).view(b, 1, 1)) & (xs >= x0.view(b, 1, 1)) & (xs < (x0 + ew).view(b, 1, 1))
    mask &= (r[:, 4] < prob).view(b, 1, 1)
    return x.masked_fill(mask.unsqueeze(1), 0.0)


class PerImageV2:
    """Apply a torchvision v2 policy to each uint8 image separately (so parameters differ per image)."""

    def __init__(self, policy) -> None:
        self.policy = policy

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        u8 = (x * 255.0).round().clamp(0, 255).to(torch.uint8).cpu()
        out = torch.stack([self.policy(img) for img in u8])
        return out.to(x.device, torch.float32) / 255.0


def make_augmentation(name: str):
    """Return a callable(batch float NCHW in [0,1], generator) -> batch, or None for 'none'."""
    if name == "none":
        return None
    if name == "light":
        return AffinePreset(translate=0.1, whole_pixels=True)
    if name == "standard":
        return AffinePreset(translate=0.1, scale=(0.85, 1.1), degrees=10, hflip=True)
    if name in ("randaugment", "trivialaugment"):
        from torchvision.transforms import v2

        return PerImageV2(v2.RandAugment() if name == "randaugment" else v2.TrivialAugmentWide())
    raise ValueError(f"unknown augmentation '{name}'; choose from: {', '.join(AUGMENTATIONS)}")


def strong_augmentation(base: str) -> AffinePreset:
    """The extra augmentation used for minority classes by 'minority-augment'."""
    return AffinePreset(translate=0.12, scale=(0.85, 1.1), degrees=15,
                        hflip=(base in ("standard", "randaugment", "trivialaugment")), erase_prob=0.25)


def make_batch_mixer(mixup: bool, cutmix: bool, num_classes: int, alpha: float = 0.2, cutmix_alpha: float = 1.0):
    """torchvision v2 MixUp / CutMix (randomly one of them per batch when both are chosen)."""
    if not (mixup or cutmix):
        return None
    from torchvision.transforms import v2

    ops = []
    if mixup:
        ops.append(v2.MixUp(alpha=alpha, num_classes=num_classes))
    if cutmix:
        ops.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
    return ops[0] if len(ops) == 1 else v2.RandomChoice(ops)
