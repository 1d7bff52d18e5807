"""Deskewing: straighten each image's slant before the network sees it.

Handwriting leans, and a rare class with a few dozen images holds only a few of its slants; a
network that never sees slant needs none of them. The slant is read off the image's second moments
(the covariance of the ink's column with its row over the row's variance, the classic MNIST
deskewing) and undone with a horizontal shear about the ink's centre row, so the image keeps its
place and size. It runs inside the model on every image, in training, evaluation and export
alike: a checkpoint or an ONNX file stays self-contained, and a test image is straightened exactly
as the training images were. It has no weights.

"Ink" is whatever differs from the image's border: the border's median per channel is taken as
the background, so white-on-black digits and dark-on-white scans are both straightened, and the
pixels the shear brings in from outside are background. The training augmentation fills what it
shifts in with the same background, so a training image is judged as a test image is.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAX_SLANT = 1.0  # at most a 45-degree shear: a blot or a line of text is not a leaning stroke


def _pixel_centres(n: int, like: torch.Tensor) -> torch.Tensor:
    """The centres of ``n`` pixels in grid_sample's coordinates (align_corners=False): -1 to 1."""
    return (torch.arange(n, device=like.device, dtype=like.dtype) * 2 + 1) / n - 1


def background(x: torch.Tensor) -> torch.Tensor:
    """(N, C, 1, 1): the median of each image's border pixels per channel, so a stroke that
    reaches the edge or a strip a shift brought in does not move it (a sort, which ONNX exports)."""
    border = torch.cat([x[:, :, 0, :], x[:, :, -1, :], x[:, :, :, 0], x[:, :, :, -1]], dim=2)
    middle = (border.shape[2] - 1) // 2
    return border.sort(dim=2).values[:, :, middle].unsqueeze(-1).unsqueeze(-1)


def slant(x: torch.Tensor, bg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the slant (columns of shift per row, both in grid units) and the ink's centre row.

    An image without ink (all background) has slant 0: it is left as it is."""
    n, _, h, w = x.shape
    ink = (x - bg).abs().mean(dim=1)  # N x H x W
    ys = _pixel_centres(h, x).view(1, h, 1)
    xs = _pixel_centres(w, x).view(1, 1, w)
    total = ink.sum(dim=(1, 2)).clamp_min(1e-6)
    cy = (ink * ys).sum(dim=(1, 2)) / total
    cx = (ink * xs).sum(dim=(1, 2)) / total
    dy = ys - cy.view(n, 1, 1)
    var_y = (ink * dy * dy).sum(dim=(1, 2)) / total
    cov = (ink * dy * (xs - cx.view(n, 1, 1))).sum(dim=(1, 2)) / total
    alpha = torch.where(var_y > 1e-6, cov / var_y.clamp_min(1e-6), torch.zeros_like(cov))
    return alpha.clamp(-MAX_SLANT, MAX_SLANT), cy


def shear(x: torch.Tensor, alpha: torch.Tensor, cy: torch.Tensor, fill: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Each image resampled at column + alpha * (row - cy): the shear that makes a stroke of that
    slant upright (a negative ``alpha`` undoes it). Pixels from outside the image are ``fill``."""
    n, _, h, w = x.shape
    ys = _pixel_centres(h, x).view(1, h, 1).expand(n, h, w)
    xs = _pixel_centres(w, x).view(1, 1, w).expand(n, h, w)
    columns = xs + alpha.view(n, 1, 1) * (ys - cy.view(n, 1, 1))
    return resample_over(x, torch.stack([columns, ys], dim=-1), fill)


def resample_over(x: torch.Tensor, grid: torch.Tensor, fill: torch.Tensor | float) -> torch.Tensor:
    """Bilinear ``grid_sample`` of ``x`` where what comes from outside the image is ``fill`` (a
    number, or N x C x 1 x 1: each image's background), not black."""
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


class Deskew(nn.Module):
    """Straightens each image of a batch (N, C, H, W, values in [0, 1]) by its own slant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        x = x.float()  # moments in half precision (autocast) would misjudge the slant
        bg = background(x)
        alpha, cy = slant(x, bg)
        out = shear(x, alpha, cy, bg).to(dtype)
        return out.contiguous(memory_format=torch.channels_last) if channels_last else out

    def to_input(self, maps: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Maps over the straightened images (N, K, H, W) moved back onto the images ``x`` as given:
        a heat map drawn over the user's image must lie on the strokes it is about."""
        x = x.float()
        alpha, cy = slant(x, background(x))
        return shear(maps.float(), -alpha, cy)
