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

from balancelab.engine.train.deskew import background, resample_over

AUGMENTATIONS = {
    "none": "no augmentation",
    "light": "random whole-pixel shift up to 10% (safe for digits, text, symbols)",
    "standard": "random shift, scale, rotation and horizontal flip (natural images)",
    "geometric": "random shift, scale and rotation without flips (digits, text, symbols: a flip changes them)",
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
    shear: float = 0.0  # degrees of random horizontal shear (a slant), drawn in [-shear, shear]

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.shape[0] == 0:
            return x
        return self.sample(x, self.grid(x, generator), generator)

    def sample(self, x: torch.Tensor, grid: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Resample by ``grid``. What a shift brings in, and what erasing hides, is each image's own
        background (its border's median, per channel): black for white-on-black digits as before,
        paper for a dark-on-white scan, where a black strip would read as ink to deskewing."""
        bg = background(x) if self.translate or self.erase_prob else None  # a sort per batch: only when used
        if self.translate:
            out = resample_over(x, grid, bg)
        else:
            out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if self.erase_prob:
            out = random_erase(out, self.erase_prob, generator, fill=bg)
        return out

    def grid(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The sampling grid (N, H, W, 2) of one random affine per image."""
        b = x.shape[0]
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
        a, b_, c, d = cos * flip, -sin, sin * flip, cos
        if self.shear:  # drawn only when asked, so every other preset's random stream is unchanged
            k = torch.tan((rand(b) * 2 - 1) * math.radians(self.shear))
            a, b_, c, d = a, a * k + b_, c, c * k + d  # (rotation and scale) x (shear)
        theta = torch.stack([
            torch.stack([a, b_, tx], dim=1),
            torch.stack([c, d, ty], dim=1),
        ], dim=1)
        return F.affine_grid(theta, list(x.shape), align_corners=False)


@dataclass(frozen=True)
class ElasticPreset:
    """A random affine plus a smooth random displacement field per image, in one ``grid_sample``.

    Simard et al. (ICDAR 2003): uniform noise in [-1, 1] per pixel and axis, Gaussian-smoothed
    (``sigma``) and scaled (``alpha``), in pixels of a 28 px image and scaled with the side (34 and 6:
    about 1.2 px of displacement on average, visibly new strokes, still the same digit), so
    each draw is a new plausible stroke shape rather than a copy of one of the few originals.
    """

    affine: AffinePreset
    alpha: float = 34.0
    sigma: float = 6.0

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.shape[0] == 0:
            return x
        return self.affine.sample(x, self.affine.grid(x, generator) + self.displacement(x, generator), generator)

    def displacement(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(N, H, W, 2) offsets in grid units (2 units span a side)."""
        b, _, h, w = x.shape
        side = min(h, w)
        sigma = self.sigma * side / 28.0
        radius = max(1, int(math.ceil(3 * sigma)))
        taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
        kernel = (kernel / kernel.sum()).to(x.device)
        noise = (torch.rand(b * 2, 1, h, w, generator=generator) * 2 - 1).to(x.device)
        noise = F.conv2d(F.pad(noise, (radius, radius, 0, 0), mode="reflect" if radius < w else "replicate"),
                         kernel.view(1, 1, 1, -1))
        noise = F.conv2d(F.pad(noise, (0, 0, radius, radius), mode="reflect" if radius < h else "replicate"),
                         kernel.view(1, 1, -1, 1))
        pixels = noise.view(b, 2, h, w) * (self.alpha * side / 28.0)
        scale = torch.tensor([2.0 / w, 2.0 / h], device=x.device).view(1, 2, 1, 1)
        return (pixels * scale).permute(0, 2, 3, 1)


def random_erase(x: torch.Tensor, prob: float, generator: torch.Generator | None = None,
                 fill: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Erase one random rectangle (10-25% of the side) per image with probability ``prob``, to
    ``fill`` (a number, or N x C x 1 x 1 per image and channel)."""
    b, _, h, w = x.shape
    r = torch.rand(b, 5, generator=generator).to(x.device)
    eh, ew = (0.1 + 0.15 * r[:, 0]) * h, (0.1 + 0.15 * r[:, 1]) * w
    y0, x0 = r[:, 2] * (h - eh), r[:, 3] * (w - ew)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    mask = (ys >= y0.view(b, 1, 1)) & (ys < (y0 + eh).view(b, 1, 1)) & (xs >= x0.view(b, 1, 1)) & (xs < (x0 + ew).view(b, 1, 1))
    mask &= (r[:, 4] < prob).view(b, 1, 1)
    return torch.where(mask.unsqueeze(1), torch.as_tensor(fill, dtype=x.dtype, device=x.device), x)


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
    if name == "geometric":
        return AffinePreset(translate=0.1, scale=(0.9, 1.1), degrees=10)
    if name in ("randaugment", "trivialaugment"):
        from torchvision.transforms import v2

        return PerImageV2(v2.RandAugment() if name == "randaugment" else v2.TrivialAugmentWide())
    raise ValueError(f"unknown augmentation '{name}'; choose from: {', '.join(AUGMENTATIONS)}")


def strong_augmentation(base: str) -> AffinePreset:
    """The extra augmentation used for minority classes by 'minority-augment'."""
    return AffinePreset(translate=0.12, scale=(0.85, 1.1), degrees=15,
                        hflip=(base in ("standard", "randaugment", "trivialaugment")), erase_prob=0.25)


def slant_augmentation(base: str) -> AffinePreset:
    """The augmentation of 'minority-slant': the shift, scale and rotation of 'minority-augment'
    plus a random slant (shear up to 15 degrees) instead of erasing: handwriting leans, and a
    slanted rare digit is a new plausible one, where an erased stroke can turn a 9 into a 4."""
    return AffinePreset(translate=0.12, scale=(0.85, 1.1), degrees=15, shear=15,
                        hflip=(base in ("standard", "randaugment", "trivialaugment")))


def elastic_augmentation(base: str) -> ElasticPreset:
    """The augmentation of 'minority-elastic': the affine of 'minority-augment' without erasing
    (a hidden stroke can turn a 9 into a 4) plus an elastic distortion."""
    return ElasticPreset(AffinePreset(translate=0.12, scale=(0.85, 1.1), degrees=15,
                                      hflip=(base in ("standard", "randaugment", "trivialaugment"))))



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


# --- image-space synthesis for minority classes -------------------------------------------------

def remix_label_weights(lam: torch.Tensor, n_first: torch.Tensor, n_second: torch.Tensor, kappa: float,
                        tau: float) -> torch.Tensor:
    """Remix's label weight of the first image of each pair (Chou et al. 2020, eq. 4).

    The image is ``lam * first + (1 - lam) * second``. The label is all the second's when the first
    class is at least ``kappa`` times more frequent and ``lam < tau`` (the rarer image covers more
    than 1 - tau of the mix), all the first's in the mirrored case, else ``lam`` as in mixup.
    """
    ratio = n_first.float() / n_second.float().clamp_min(1.0)
    out = lam.clone()
    out[(ratio >= kappa) & (lam < tau)] = 0.0
    out[(ratio <= 1.0 / kappa) & (1.0 - lam < tau)] = 1.0
    return out


class Remix:
    """Mixup of each image with a random partner of the batch (a mixing factor per pair, drawn from
    Beta(alpha, alpha)), with Remix's label rule: a minority image mixed into a majority one keeps
    its own label, so mixing stops pulling the boundary towards the frequent classes."""

    def __init__(self, counts, num_classes: int, alpha: float, kappa: float, tau: float) -> None:
        self.counts = torch.as_tensor(counts, dtype=torch.float32)
        self.num_classes, self.kappa, self.tau = num_classes, float(kappa), float(tau)
        self.beta = torch.distributions.Beta(float(alpha), float(alpha))

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        perm = torch.randperm(b).to(x.device)
        lam = self.beta.sample((b,)).to(x.device)
        mixed = lam.view(b, 1, 1, 1) * x + (1.0 - lam.view(b, 1, 1, 1)) * x[perm]
        counts = self.counts.to(x.device)
        lam_y = remix_label_weights(lam, counts[y], counts[y[perm]], self.kappa, self.tau).view(b, 1)
        one_hot = F.one_hot(y, self.num_classes).float()
        return mixed, lam_y * one_hot + (1.0 - lam_y) * one_hot[perm]


class MinorityMixup:
    """Intra-class mixup for minority classes: each image of a class in ``minority_mask`` is mixed
    with another image of the same class in the batch, keeping a uniform share in [0.5, 1] of
    itself; the label is unchanged, so an over-sampled epoch shows new minority images instead of
    the same few repeated a hundred times."""

    def __init__(self, minority_mask) -> None:
        self.mask = torch.as_tensor(minority_mask, dtype=torch.bool)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        if b < 2:
            return x, y
        same = (y.view(-1, 1) == y.view(1, -1)) & ~torch.eye(b, dtype=torch.bool, device=y.device)
        chosen = self.mask.to(y.device)[y] & same.any(dim=1)
        if not bool(chosen.any()):
            return x, y
        # a random partner of the same class: the arg-max of random scores over the allowed entries
        scores = torch.rand(b, b).to(x.device).masked_fill(~same, -1.0)
        partner = scores.argmax(dim=1)
        lam = (0.5 + 0.5 * torch.rand(b)).to(x.device).view(b, 1, 1, 1)
        mixed = lam * x + (1.0 - lam) * x[partner]
        return torch.where(chosen.view(b, 1, 1, 1), mixed, x), y


class _OneOf:
    """One of several cross-class mixers per batch, chosen at random."""

    def __init__(self, mixers: list) -> None:
        self.mixers = mixers

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        return self.mixers[int(torch.randint(len(self.mixers), (1,)))](x, y)


class MixerChain:
    """Apply mixers in order (intra-class minority mixup first, then one cross-class mixer)."""

    def __init__(self, *mixers) -> None:
        self.mixers = [m for m in mixers if m is not None]

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        target = y
        for m in self.mixers:
            if target.ndim > 1:  # a soft target cannot be mixed again by an intra-class mixer
                break
            x, target = m(x, target)
        return x, target


def make_minority_mixers(plan, counts, num_classes: int, alpha: float, kappa: float, tau: float,
                         minority_mask, cross_class=None):
    """The batch mixer of a plan with ``remix`` / ``minority-mixup``; ``cross_class`` is the
    mixup/cutmix mixer of :func:`make_batch_mixer` (None when not chosen)."""
    cross = [m for m in (cross_class, Remix(counts, num_classes, alpha, kappa, tau) if plan.remix else None)
             if m is not None]
    if len(cross) > 1:
        cross = [_OneOf(cross)]
    intra = MinorityMixup(minority_mask) if plan.minority_mixup else None
    chain = MixerChain(intra, *cross)
    return chain if chain.mixers else None
