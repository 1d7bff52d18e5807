"""'minority-elastic': a smooth displacement field on top of the minority affine, drawn per image,
bounded like Simard et al.'s, never erasing strokes, and applied only to minority-class images."""
import torch

from balancelab.engine.train.augment import AffinePreset, ElasticPreset, elastic_augmentation
from balancelab.engine.train.strategies import StrategyError, parse_strategy

import pytest


def test_the_displacement_is_smooth_bounded_and_new_for_every_image():
    x = torch.zeros(8, 1, 28, 28)
    d = ElasticPreset(AffinePreset()).displacement(x, torch.Generator().manual_seed(0))
    assert d.shape == (8, 28, 28, 2)
    pixels = d * 14  # grid units -> pixels of a 28 px side
    assert 0.3 < float(pixels.std()) < 3.0  # a visible distortion, not a new digit
    assert float(pixels.abs().max()) < 8.0
    assert float((pixels[:, 1:] - pixels[:, :-1]).abs().mean()) < 0.2 * float(pixels.abs().mean())  # smooth
    assert not torch.allclose(d[0], d[1])  # each image gets its own field


def test_identity_affine_plus_zero_alpha_returns_the_image():
    x = torch.rand(4, 1, 28, 28)
    y = ElasticPreset(AffinePreset(), alpha=0.0)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(x, y, atol=1e-5)


def test_elastic_keeps_the_ink_and_changes_the_shape():
    x = torch.zeros(16, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 1.0  # a "1" stroke
    y = elastic_augmentation("light")(x, torch.Generator().manual_seed(3))
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    ink = y.sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))
    assert bool(((ink > 0.6) & (ink < 1.6)).all())  # no erased block, the stroke survives
    assert float((y - x).abs().mean()) > 0.01 and not torch.allclose(y[0], y[1])


def test_one_minority_augmentation_per_strategy():
    plan = parse_strategy("oversample+minority-elastic")
    assert plan.minority_augmentation.name == "minority-elastic" and plan.sampler == "oversample"
    assert parse_strategy("none").minority_augmentation is None
    with pytest.raises(StrategyError):
        parse_strategy("minority-augment+minority-elastic")
