"""Feature maps: what each convolution layer of a finished run's model computes for one image.

As the course shows them: per convolution layer, a grid of small grey images, one per channel of
the layer's output. One forward pass under ``inference_mode`` with a forward hook on every
``Conv2d``; each hook keeps at most ``max_channels`` channels (the most active ones, in channel
order) pooled to at most ``max_tile`` pixels a side, so a deep network (DenseNet-121 has 120
convolutions) costs a few megabytes whatever the image size. Every channel is scaled to 0-255 on
its own: the grid shows where a channel responds, not how strongly compared with another.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from balancelab.engine.results.gradcam import CamExplainer
from balancelab.engine.train.deskew import Deskew

MAX_CHANNELS = 16
MAX_TILE = 48
GAP = 2  # pixels between tiles


@dataclass(frozen=True)
class LayerMaps:
    """One convolution layer's output for one image, as a uint8 grid of per-channel tiles."""

    name: str  # the module's path in the model, e.g. "backbone.features.3"
    channels: int  # channels the layer computes
    size: tuple[int, int]  # height, width of its output
    shown: tuple[int, ...]  # the channel indices tiled in ``grid``, row by row
    grid: np.ndarray  # uint8, rows x cols; the gaps between tiles are 255


@dataclass(frozen=True)
class FeatureMaps:
    path: str  # the image
    layers: list[LayerMaps]  # in forward order
    deskewed: bool = False  # the model straightened the image's slant before its first layer


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not layers:
        raise ValueError("the model has no convolution layer")
    return layers


def tile_grid(tiles: np.ndarray) -> np.ndarray:
    """n x h x w floats -> one uint8 grid of about square shape, each tile scaled to 0-255 alone."""
    n, h, w = tiles.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * h + (rows - 1) * GAP, cols * w + (cols - 1) * GAP), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        lo, hi = float(tile.min()), float(tile.max())
        scaled = (tile - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(tile)
        r, c = divmod(i, cols)
        grid[r * (h + GAP):r * (h + GAP) + h, c * (w + GAP):c * (w + GAP) + w] = scaled.round().astype(np.uint8)
    return grid


def _reduce(out: torch.Tensor, max_channels: int, max_tile: int) -> tuple[tuple[int, ...], np.ndarray]:
    """1 x C x H x W activation -> (the most active channels, their tiles pooled to <= max_tile px)."""
    act = out[0].float()
    c, h, w = act.shape
    strongest = torch.topk(act.abs().mean(dim=(1, 2)), min(max_channels, c)).indices
    shown = torch.sort(strongest).values
    picked = act[shown]
    if max(h, w) > max_tile:
        scale = max_tile / max(h, w)
        picked = F.adaptive_avg_pool2d(picked, (max(1, round(h * scale)), max(1, round(w * scale))))
    return tuple(int(i) for i in shown), picked.cpu().numpy()


def feature_maps(model: nn.Module, image: torch.Tensor, max_channels: int = MAX_CHANNELS,
                 max_tile: int = MAX_TILE) -> list[LayerMaps]:
    """One grid per convolution layer of ``model`` for ``image`` (float C x H x W in [0, 1])."""
    if max_channels < 1 or max_tile < 1:
        raise ValueError("max_channels and max_tile must be at least 1")
    found: list[LayerMaps] = []

    def hook_for(name: str):
        def hook(_module, _inp, out):
            if not isinstance(out, torch.Tensor) or out.dim() != 4:
                return
            shown, tiles = _reduce(out, max_channels, max_tile)
            found.append(LayerMaps(name, int(out.shape[1]), (int(out.shape[2]), int(out.shape[3])), shown,
                                   tile_grid(tiles)))
        return hook

    handles = [m.register_forward_hook(hook_for(name)) for name, m in conv_layers(model)]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(image.unsqueeze(0).to(next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return found


class FeatureMapExplainer:
    """Feature maps of image after image of one run, with the run's model kept loaded.

    It holds a model of its own (not Grad-CAM's): its hooks must never fire in a Grad-CAM pass
    running at the same time on another worker.
    """

    def __init__(self) -> None:
        self._models = CamExplainer()

    def maps(self, run_dir: str, image_path: str, max_channels: int = MAX_CHANNELS) -> FeatureMaps:
        from balancelab.engine.data.imageio import load_array

        model, state = self._models.model(run_dir)
        arr = load_array(image_path, int(state["in_channels"]), int(state["image_size"]))
        x = torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0
        deskewed = any(isinstance(m, Deskew) for m in model.modules())
        return FeatureMaps(image_path, feature_maps(model, x, max_channels), deskewed)

    def clear(self) -> None:
        self._models.clear()
