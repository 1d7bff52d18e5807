"""The 'light' preset shifts by whole pixels: every training image is an exact shifted copy (its
background, the median of its border, filled in), never the bilinear blur of a sub-pixel shift that
test images never have."""
import torch
import torch.nn.functional as F

from balancelab.engine.train.augment import make_augmentation
from balancelab.engine.train.deskew import background


def _shifted(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    out = torch.zeros_like(img) + background(img[None])[0]
    h, w = img.shape[-2:]
    out[..., max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] = \
        img[..., max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)]
    return out


def test_light_shift_is_a_whole_pixel_copy():
    x = torch.rand(32, 1, 28, 20)
    y = make_augmentation("light")(x, torch.Generator().manual_seed(0))
    shifts = set()
    for i in range(len(x)):
        errors = {(dy, dx): float((y[i] - _shifted(x[i], dy, dx)).abs().max()) for dy in range(-3, 4) for dx in range(-2, 3)}
        best = min(errors, key=errors.get)
        assert errors[best] < 1e-5, (i, errors[best])  # a sub-pixel shift would blend neighbours (error ~0.1+)
        shifts.add(best)
    assert len(shifts) > 5  # and it does shift, by different amounts


def test_light_shift_keeps_the_image_sharp():
    """High-frequency content (a checkerboard) survives: its total variation is unchanged inside."""
    board = ((torch.arange(28).view(-1, 1) + torch.arange(28).view(1, -1)) % 2).float().expand(16, 1, 28, 28)
    y = make_augmentation("light")(board.clone(), torch.Generator().manual_seed(1))
    inner = y[:, :, 4:-4, 4:-4]
    assert torch.allclose(F.avg_pool2d(inner, 2), torch.full_like(F.avg_pool2d(inner, 2), 0.5), atol=1e-5)
    assert float((inner - 0.5).abs().min()) > 0.49  # every pixel still 0 or 1, no grey blends


def test_geometric_preset_rotates_and_scales_but_never_mirrors():
    """'geometric' is 'standard' without the flip: an asymmetric shape keeps its handedness."""
    img = torch.zeros(1, 1, 32, 32)
    img[..., 8:24, 8:12] = 1.0  # an L: a bar on the left ...
    img[..., 20:24, 8:22] = 1.0  # ... and a foot to the right
    x = img.expand(64, 1, 32, 32).clone()
    y = make_augmentation("geometric")(x, torch.Generator().manual_seed(0))
    left, right = y[..., :, :16].sum(dim=(1, 2, 3)), y[..., :, 16:].sum(dim=(1, 2, 3))
    assert bool((left > right).all())  # a mirror would put the bar on the right
    assert not torch.allclose(y, x)  # and it does transform
    flipped = make_augmentation("standard")(x, torch.Generator().manual_seed(0))
    assert bool((flipped[..., :, 16:].sum(dim=(1, 2, 3)) > flipped[..., :, :16].sum(dim=(1, 2, 3))).any())


def test_every_registered_preset_keeps_the_batch_shape_and_range():
    from balancelab.engine.train.augment import AUGMENTATIONS

    x = torch.rand(6, 3, 24, 24)
    for name in AUGMENTATIONS:
        aug = make_augmentation(name)
        y = x if aug is None else aug(x.clone(), torch.Generator().manual_seed(0))
        assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0, name


def test_a_slant_leans_a_vertical_stroke_and_leaves_other_presets_draws_alone():
    """minority-slant: shear leans a stroke (its columns differ top to bottom); presets without
    shear draw exactly the random numbers they drew before it existed."""
    import torch

    from balancelab.engine.train.augment import AffinePreset, strong_augmentation

    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 4:24, 13:15] = 1.0
    y = AffinePreset(shear=30)(x, torch.Generator().manual_seed(0))[0, 0]
    assert y[6].argmax() != y[21].argmax()  # leaning
    plain = strong_augmentation("light")
    a = plain(x.repeat(4, 1, 1, 1), torch.Generator().manual_seed(3))
    b = AffinePreset(**{**plain.__dict__, "shear": 0.0})(x.repeat(4, 1, 1, 1), torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
