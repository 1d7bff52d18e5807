"""Feature maps (engine/results/feature_maps.py): one bounded uint8 grid per convolution layer,
for every model of the registry."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from balancelab.engine.results.feature_maps import (GAP, FeatureMapExplainer, conv_layers, feature_maps, tile_grid)
from balancelab.engine.train.models import MODELS, build_model


def _small_size(name: str) -> int:
    spec = MODELS[name]
    size = max(spec.min_size, 16)
    return size + (-size) % spec.size_multiple


@pytest.mark.parametrize("name", list(MODELS))
def test_every_registry_model_gives_one_grid_per_conv_layer(name):
    torch.manual_seed(0)
    size = _small_size(name)
    model = build_model(name, 3, 1, size)
    model.train()
    layers = feature_maps(model, torch.rand(1, size, size), max_channels=4, max_tile=8)
    convs = conv_layers(model)
    # an auxiliary training head (Inception v3's AuxLogits) does not run at evaluation: no maps for it
    evaluated = [(n, m) for n, m in convs if "AuxLogits" not in n]
    assert len(layers) >= len(evaluated) > 0  # a conv module called twice in one pass shows twice
    assert {lm.name for lm in layers} == {n for n, _ in evaluated}
    for lm in layers:
        assert lm.grid.dtype == np.uint8 and lm.grid.ndim == 2
        assert len(lm.shown) == min(4, lm.channels) and list(lm.shown) == sorted(lm.shown)
        cols = math.ceil(math.sqrt(len(lm.shown)))
        assert lm.grid.shape[1] <= cols * 8 + (cols - 1) * GAP  # bounded whatever the layer size
    assert model.training  # the model is left as it was found
    assert not any(m._forward_hooks for _, m in convs)  # and without hooks


def test_layers_match_the_activation_shapes_and_scale_each_channel():
    torch.manual_seed(0)
    model = build_model("cifar-classic", 3, 3, 32)
    layers = feature_maps(model, torch.rand(3, 32, 32), max_channels=16, max_tile=64)
    assert [lm.name for lm in layers] == [n for n, _ in conv_layers(model)]
    assert [(lm.channels, lm.size) for lm in layers] == [(32, (32, 32))] * 2 + [(64, (16, 16))] * 2 + [(128, (8, 8))] * 2
    first = layers[0]
    assert first.grid.shape == (4 * 32 + 3 * GAP, 4 * 32 + 3 * GAP)  # 16 tiles of 32 px, 4 x 4
    tile = first.grid[:32, :32]
    assert tile.min() == 0 and tile.max() == 255  # every channel uses the full grey range


def test_the_most_active_channels_are_shown():
    conv = nn.Conv2d(1, 3, 1, bias=True)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([0.0, 5.0, 1.0]))
    model = nn.Sequential(conv)
    (lm,) = feature_maps(model, torch.rand(1, 8, 8), max_channels=2)
    assert lm.shown == (1, 2)
    assert not lm.grid[:8, :8].any()  # a constant channel is a black tile, not a division by zero


def test_tile_grid_layout():
    grid = tile_grid(np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3))
    assert grid.shape == (2 * 2 + GAP, 3 * 3 + 2 * GAP)  # 5 tiles: 3 columns, 2 rows
    assert (grid[:, 3:3 + GAP] == 255).all()
    with pytest.raises(ValueError):
        feature_maps(nn.Sequential(nn.Linear(2, 2)), torch.rand(1, 2, 2))


def test_explainer_reads_a_finished_run(demo_root, tmp_path):
    from balancelab.engine.train.config import TrainConfig
    from balancelab.engine.train.run import train

    out = tmp_path / "run"
    events = list(train(TrainConfig(data=str(demo_root), out=str(out), model="tiny-2conv", epochs=1, image_size=16,
                                    device="cpu")))
    assert events[-1].result.metrics
    image = next(p for p in (demo_root / "test").rglob("*.png"))
    maps = FeatureMapExplainer().maps(str(out), str(image), max_channels=8)
    assert maps.path == str(image) and [lm.channels for lm in maps.layers] == [16, 32]
    assert len(maps.layers[0].shown) == 8
