"""Thumbnails without decoding the photo: from the decoded cache, else the JPEG's own EXIF thumbnail.

A 12 MP JPEG takes ~30 ms to decode even at reduced scale; the canonical cache row (224 px,
already decoded by the deep check) or the ~160 px thumbnail that cameras and phones embed in
the EXIF block cost well under a millisecond. Only files with neither are decoded (with
``draft``), and callers do that on a worker thread, never on the GUI's.
"""
from __future__ import annotations

import struct

from PIL import Image, ImageOps

from balancelab.engine.data.canonical import Canonical
from balancelab.engine.data.imageio import ImageDecodeError, open_header, open_image, read_head_tail

__all__ = ["embedded_thumbnail", "thumbnail_image"]

_HEAD = 128 * 1024
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def embedded_thumbnail(head: bytes) -> tuple[bytes, int] | None:
    """(thumbnail JPEG bytes, EXIF orientation) from the first bytes of a JPEG, or None."""
    if not head.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 4 <= len(head) and head[pos] == 0xFF:
        marker = head[pos + 1]
        if marker in (0xDA, 0xD9):  # start of scan: no EXIF before the pixels
            return None
        length = struct.unpack(">H", head[pos + 2:pos + 4])[0]
        segment = head[pos + 4:pos + 2 + length]
        if marker == 0xE1 and segment.startswith(b"Exif\0\0"):
            try:
                return _from_tiff(segment[6:])
            except (struct.error, IndexError, ValueError):
                return None
        pos += 2 + length
    return None


def _from_tiff(t: bytes) -> tuple[bytes, int] | None:
    order = {b"II": "<", b"MM": ">"}.get(t[:2])
    if order is None:
        return None

    def entries(offset: int) -> tuple[dict[int, int], int]:
        (count,) = struct.unpack(order + "H", t[offset:offset + 2])
        tags = {}
        for i in range(count):
            at = offset + 2 + 12 * i
            tag, kind = struct.unpack(order + "HH", t[at:at + 4])
            fmt = "H" if kind == 3 else "I"
            tags[tag] = struct.unpack(order + fmt, t[at + 8:at + 8 + struct.calcsize(fmt)])[0]
        (following,) = struct.unpack(order + "I", t[offset + 2 + 12 * count:offset + 6 + 12 * count])
        return tags, following

    ifd0, ifd1_at = entries(struct.unpack(order + "I", t[4:8])[0])
    if not ifd1_at or ifd1_at >= len(t):
        return None
    ifd1, _ = entries(ifd1_at)
    start, size = ifd1.get(0x0201), ifd1.get(0x0202)
    if not start or not size or start + size > len(t):
        return None
    data = t[start:start + size]
    return (data, int(ifd0.get(0x0112, 1))) if data.startswith(b"\xff\xd8") else None


def _from_exif(path: str) -> Image.Image | None:
    try:
        head, _, _ = read_head_tail(path, _HEAD, 0)
    except ImageDecodeError:
        return None
    found = embedded_thumbnail(head)
    if found is None:
        return None
    data, orientation = found
    try:
        im = open_header(data)
        im.load()
    except (ImageDecodeError, OSError, SyntaxError, ValueError):
        return None
    return im.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else im


def thumbnail_image(path: str, size: int, canonical: Canonical | None = None) -> tuple[Image.Image, str]:
    """(image no larger than ``size``, where it came from: "cache", "exif" or "decode").
    Raises ImageDecodeError for a file that cannot be shown."""
    row = canonical.row_of(path) if canonical is not None else None
    if row is not None and canonical.ok[row]:
        arr = canonical.array[row]
        im = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr, "L" if arr.shape[2] == 1 else "RGB")
        source = "cache"
    else:
        im = _from_exif(path)
        source = "exif"
        if im is None:
            im = open_image(path, draft=("RGB", size))
            source = "decode"
    im = ImageOps.contain(im, (size, size)) if max(im.size) > size else im
    return im, source
