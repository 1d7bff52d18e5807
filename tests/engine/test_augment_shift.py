"""The 'light' preset shifts by whole pixels: every training image is an exact shifted copy (zeros
filled in), never the bilinear blur of a sub-pixel shift that test images never have."""
import torch
import torch.nn.functional as F

from balancelab.engine.train.augment import make_augmentation


def _shifted(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    out = torch.zeros_like(img)
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
