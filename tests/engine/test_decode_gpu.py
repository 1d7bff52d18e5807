"""The CUDA JPEG path (nvJPEG): same layout as the Pillow decode; skipped without a GPU."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from balancelab.engine.data.gpu_decode import _orient, cuda_jpeg_available, decode_jpegs_cuda
from balancelab.engine.data.imageio import decode_array


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(orientation):
    arr = np.random.default_rng(orientation).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.info["exif"] = exif.tobytes()
    want = np.asarray(ImageOps.exif_transpose(im))
    got = _orient(torch.from_numpy(arr).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()
    assert np.array_equal(got, want)


@pytest.mark.skipif(not cuda_jpeg_available(), reason="needs a CUDA GPU")
def test_cuda_batch_decode_matches_pillow_draft_decode():
    datas = []
    for i, size in enumerate(((640, 480), (480, 640), (1000, 300))):
        buf = io.BytesIO()
        y, x = np.mgrid[0:size[1], 0:size[0]]
        smooth = np.stack([(x * 255 // size[0]), (y * 255 // size[1]), np.full_like(x, 40 * i)], -1).astype(np.uint8)
        Image.fromarray(smooth).save(buf, "JPEG", quality=95)
        datas.append(buf.getvalue())
    got = decode_jpegs_cuda(datas, 64)
    want = np.stack([decode_array(d, 3, 64) for d in datas])
    assert got.shape == want.shape == (3, 64, 64, 3)
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 6  # different scalers, same picture
