"""The first look at a file: its header and its end marker, never its pixels.

Reading the first 64 KB and the last 1 KB of a 5 MB photo and parsing the header is ~100x
cheaper than decoding it, and already finds what a folder of photos usually gets wrong:
zero-byte and unreadable files, files that are not images, decompression bombs (by declared
size) and files cut short (a JPEG without its end-of-image marker, a PNG without IEND: the way
an interrupted copy or download looks). Corrupt pixel data is left to the deep check
(:mod:`deep_check`), which decodes every file once anyway to fill the training cache.
"""
from __future__ import annotations

import struct
import warnings

from PIL import Image

from balancelab.engine.data.imageio import ImageDecodeError, open_header, read_head_tail

#: Enough for the header of nearly every photo (EXIF with its thumbnail comes before the frame
#: header); a file whose header is longer is read again with :data:`LONG_HEAD`, then whole.
HEAD_BYTES = 64 * 1024
LONG_HEAD = 1024 * 1024
TAIL_BYTES = 1024

__all__ = ["check_header", "check_headers", "end_marker_problem"]


def end_marker_problem(fmt: str, head: bytes, tail: bytes, n_bytes: int) -> str | None:
    """Why the file looks cut short by its format's end marker or declared length, or None."""
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        return "truncated: no JPEG end-of-image marker"
    if fmt == "PNG" and b"IEND" not in tail:
        return "truncated: no PNG IEND chunk"
    if fmt == "GIF" and b";" not in tail[-16:]:
        return "truncated: no GIF trailer"
    if fmt == "BMP" and len(head) >= 6:
        declared = struct.unpack("<I", head[2:6])[0]
        if declared > n_bytes:
            return f"truncated: BMP header declares {declared} bytes, file has {n_bytes}"
    if fmt == "WEBP" and len(head) >= 8 and struct.unpack("<I", head[4:8])[0] + 8 > n_bytes:
        return "truncated: shorter than its RIFF header declares"
    return None


def _parse(head: bytes) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_header(head)


def check_header(abs_path: str) -> tuple:
    """("ok", width, height, mode, n_bytes) or ("bad", kind, reason), from the header alone."""
    try:
        head, tail, n_bytes = read_head_tail(abs_path, HEAD_BYTES, TAIL_BYTES)
        if n_bytes == 0:
            return ("bad", "zero-byte", "zero-byte file")
        for limit in (LONG_HEAD, n_bytes):  # a header longer than the first read: read more of it
            try:
                im = _parse(head)
                break
            except ImageDecodeError as exc:
                if exc.kind != "corrupt" or len(head) >= n_bytes:
                    raise
                head, tail, n_bytes = read_head_tail(abs_path, limit, TAIL_BYTES)
        else:
            im = _parse(head)
        with im:
            fmt, (width, height), mode = im.format or "", im.size, im.mode
    except ImageDecodeError as exc:
        if exc.kind == "missing":
            return ("bad", "missing", "file disappeared during the scan")
        return ("bad", exc.kind, exc.reason)
    problem = end_marker_problem(fmt, head, tail, n_bytes)
    if problem is not None:
        return ("bad", "truncated", problem)
    return ("ok", width, height, mode, n_bytes)


def check_headers(paths: list[str]) -> list[tuple]:
    """:func:`check_header` of each path (one task of a process pool)."""
    return [check_header(p) for p in paths]
