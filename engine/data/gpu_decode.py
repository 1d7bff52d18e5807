"""JPEG decode on a CUDA GPU (nvJPEG through ``torchvision.io.decode_jpeg``), in batches.

On a machine with a GPU the decode of 12 MP JPEGs, not the model, is the limit of the one
decode pass; nvJPEG decodes a batch of them on the GPU. The output matches
:func:`imageio.decode_array` in shape and layout (square ``size`` px, short side resized then
center-cropped, EXIF orientation applied), so it can fill the same canonical cache. It is not
wired into the deep check yet (see the README); files it cannot decode fall back to Pillow.
"""
from __future__ import annotations

import numpy as np

__all__ = ["cuda_jpeg_available", "decode_jpegs_cuda"]


def cuda_jpeg_available() -> bool:
    try:
        import torch
        import torchvision.io  # noqa: F401
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def decode_jpegs_cuda(datas: list[bytes], size: int, orientations: list[int] | None = None) -> np.ndarray:
    """N x size x size x 3 uint8 (CPU) from JPEG bytes, decoded as one batch on the GPU."""
    import torch
    import torch.nn.functional as F
    from torchvision.io import ImageReadMode, decode_jpeg

    tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    images = decode_jpeg(tensors, mode=ImageReadMode.RGB, device="cuda")
    out = torch.empty((len(images), size, size, 3), dtype=torch.uint8, device="cuda")
    for i, im in enumerate(images):  # C x H x W
        im = _orient(im, (orientations or [1] * len(images))[i])
        h, w = im.shape[1:]
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        resized = F.interpolate(im[None].float(), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        top, left = (nh - size) // 2, (nw - size) // 2
        crop = resized[0, :, top:top + size, left:left + size]
        out[i] = crop.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
    return out.cpu().numpy()


def _orient(im, orientation: int):
    """EXIF orientation 1-8 applied to a C x H x W tensor, as ImageOps.exif_transpose does."""
    import torch

    ops = {
        2: lambda t: torch.flip(t, dims=[2]),  # FLIP_LEFT_RIGHT
        3: lambda t: torch.rot90(t, 2, dims=[1, 2]),  # ROTATE_180
        4: lambda t: torch.flip(t, dims=[1]),  # FLIP_TOP_BOTTOM
        5: lambda t: t.transpose(1, 2),  # TRANSPOSE
        6: lambda t: torch.rot90(t, -1, dims=[1, 2]),  # ROTATE_270 (clockwise quarter turn)
        7: lambda t: torch.rot90(t.transpose(1, 2), 2, dims=[1, 2]),  # TRANSVERSE
        8: lambda t: torch.rot90(t, 1, dims=[1, 2]),  # ROTATE_90
    }
    return ops[orientation](im) if orientation in ops else im
