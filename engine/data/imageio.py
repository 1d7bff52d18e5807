"""Safe image decoding: verify files really decode and convert every mode consistently.

Everything that opens a user image goes through here so that corrupt, truncated,
zero-byte, non-image and decompression-bomb files are handled the same way by the
scanner, the training cache, prediction and the GUI thumbnails.
"""
from __future__ import annotations

import io
import os
import stat
import warnings

import numpy as np
try:
    import fcntl
except ImportError:  # Windows: no FIFOs to guard against, and no O_NONBLOCK
    fcntl = None
from PIL import Image, ImageOps, UnidentifiedImageError

from balancelab.engine.core.safe_paths import is_regular_file

#: Pillow's own limit; images with more pixels are treated as decompression bombs.
MAX_IMAGE_PIXELS: int = Image.MAX_IMAGE_PIXELS or 89_478_485

#: Files larger than this are not read at all (no real training image comes close; a
#: multi-GB file or a link to /dev/zero must not exhaust memory).
MAX_FILE_BYTES: int = 256 * 1024**2

#: Operating-system metadata files that are never part of a dataset.
OS_METADATA_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", ".directory"})

GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


class ImageDecodeError(Exception):
    """A file that cannot be used as an image; ``kind`` is a short machine-readable tag."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


_MAGIC_FORMATS = (
    (b"\x89PNG\r\n\x1a\n", ("PNG",)),
    (b"\xff\xd8\xff", ("JPEG",)),
    (b"GIF8", ("GIF",)),
    (b"BM", ("BMP",)),
)


def _format_hint(data: bytes) -> tuple[str, ...] | None:
    """Try the format named by the file's magic bytes first: it skips Pillow's plugin probing
    (a third of the per-file cost on small images). The full decode still validates the file."""
    for magic, formats in _MAGIC_FORMATS:
        if data.startswith(magic):
            return formats
    return None


def _open_any(data: bytes) -> Image.Image:
    hint = _format_hint(data)
    if hint is not None:
        try:
            return Image.open(io.BytesIO(data), formats=hint)
        except UnidentifiedImageError:
            pass  # magic bytes lied; let Pillow probe every format
    return Image.open(io.BytesIO(data))


def open_header(data: bytes) -> Image.Image:
    """Parse an image's header only (no pixels): size, mode, format; bombs and non-images refused."""
    if not data:
        raise ImageDecodeError("zero-byte", "zero-byte file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = _open_any(data)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("decompression-bomb", f"decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not-image", "not an image (contents are not a recognised image format)") from None
    except Exception as exc:  # a crafted file can make a Pillow plugin raise anything (struct.error, ...)
        raise ImageDecodeError("corrupt", f"corrupt image header: {exc or type(exc).__name__}") from None
    width, height = im.size
    if width * height > MAX_IMAGE_PIXELS:
        im.close()
        raise ImageDecodeError(
            "decompression-bomb",
            f"decompression bomb: {width}x{height} = {width * height} px exceeds the limit of {MAX_IMAGE_PIXELS} px",
        )
    if width <= 0 or height <= 0:
        im.close()
        raise ImageDecodeError("corrupt", f"invalid image size {width}x{height}")
    return im


def _load(im: Image.Image) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im.load()
    except Exception as exc:  # a decoder fed crafted data can raise anything (struct.error, ZeroDivisionError)
        text = str(exc) or exc.__class__.__name__
        kind = "truncated" if "truncat" in text.lower() else "corrupt"
        raise ImageDecodeError(kind, f"{'truncated' if kind == 'truncated' else 'corrupt'} image data: {text}") from None


def read_bytes(path: str, limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, else :class:`ImageDecodeError`.

    This and :func:`read_head_tail` are the only places that open a user's image. FIFOs,
    sockets and devices (or links to them) are refused before opening, since a FIFO blocks
    ``open()`` forever and /dev/zero never ends; the open itself is non-blocking, so a file
    swapped for a FIFO in between still cannot block, and no more than ``limit`` bytes are ever read.
    """
    limit = MAX_FILE_BYTES if limit is None else limit

    def read_all(fd: int, size: int) -> bytes:
        data = os.read(fd, size + 1)
        if len(data) != size:  # a short read, or the file grew since fstat: read on, within the limit
            data += _read_at_most(fd, limit + 1 - len(data))
        if len(data) > limit:
            raise _too_large(len(data), limit)
        return data

    return _with_checked_fd(path, limit, read_all)


def read_head_tail(path: str, head: int, tail: int) -> tuple[bytes, bytes, int]:
    """(first ``head`` bytes, last ``tail`` bytes, file size) of a regular image file, with the
    same guards as :func:`read_bytes`: what a header-only first look needs of a 5 MB photo."""

    def read_ends(fd: int, size: int) -> tuple[bytes, bytes, int]:
        first = _read_at_most(fd, min(head, size))
        if size <= head:
            return first, first[-tail:] if tail else b"", size
        last = os.pread(fd, tail, max(0, size - tail)) if tail else b""
        return first, last, size

    return _with_checked_fd(path, MAX_FILE_BYTES, read_ends)


def _with_checked_fd(path: str, limit: int, read):
    """Open ``path`` safely (regular file, non-blocking open, size within ``limit``) and call
    ``read(fd, size)``; every OS error becomes an :class:`ImageDecodeError`."""
    try:
        if not is_regular_file(path):
            raise _not_regular(os.stat(path).st_mode)
        fd = os.open(path, _OPEN_FLAGS)
        try:
            st = os.fstat(fd)  # the file opened may not be the one checked: check again
            if not stat.S_ISREG(st.st_mode):
                raise _not_regular(st.st_mode)
            if st.st_size > limit:
                raise _too_large(st.st_size, limit)
            if _OPEN_FLAGS & _NONBLOCK:
                fcntl.fcntl(fd, fcntl.F_SETFL, 0)  # back to blocking reads (no other F_SETFL flag was set)
            return read(fd, st.st_size)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise ImageDecodeError("missing", "file no longer exists") from None
    except PermissionError:
        raise ImageDecodeError("unreadable", "permission denied") from None
    except IsADirectoryError:
        raise ImageDecodeError("not-image", "is a folder, not a file") from None
    except OSError as exc:
        raise ImageDecodeError("unreadable", f"cannot read file: {exc.strerror or exc}") from None


_NONBLOCK = getattr(os, "O_NONBLOCK", 0) if fcntl is not None else 0
_OPEN_FLAGS = os.O_RDONLY | _NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0) \
    | getattr(os, "O_BINARY", 0)

_SPECIAL_KINDS = (
    (stat.S_ISDIR, "is a folder, not a file"),
    (stat.S_ISFIFO, "is a named pipe (FIFO), not an image file"),
    (stat.S_ISSOCK, "is a socket, not an image file"),
    (stat.S_ISCHR, "is a character device, not an image file"),
    (stat.S_ISBLK, "is a block device, not an image file"),
)


def _not_regular(mode: int) -> ImageDecodeError:
    for test, reason in _SPECIAL_KINDS:
        if test(mode):
            return ImageDecodeError("not-image" if test is stat.S_ISDIR else "special-file", reason)
    return ImageDecodeError("special-file", "not a regular file")


def _too_large(n_bytes: int, limit: int) -> ImageDecodeError:
    return ImageDecodeError("too-large", f"file too large ({n_bytes / 1024**2:.0f} MB > {limit / 1024**2:.0f} MB limit)")


def _read_at_most(fd: int, n: int) -> bytes:
    """Up to ``n`` bytes (fewer only at end of file), in blocks so a short read is not mistaken for EOF."""
    chunks, left = [], n
    while left > 0:
        block = os.read(fd, min(left, _READ_BLOCK))
        if not block:
            break
        chunks.append(block)
        left -= len(block)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_READ_BLOCK = 16 * 1024**2


def open_image(path: str, draft: tuple[str, int] | None = None) -> Image.Image:
    """Open and fully decode an image file, with EXIF orientation applied.

    ``draft`` = (mode, size) lets JPEG decode at reduced scale, which is much faster
    when the image is only needed as a thumbnail or a small model input.
    """
    im = open_header(read_bytes(path))
    if draft is not None and im.format == "JPEG":
        im.draft(draft[0], (draft[1], draft[1]))
    _load(im)
    try:
        transposed = ImageOps.exif_transpose(im)
    except Exception:  # broken EXIF must not make a readable image unusable
        transposed = im
    return transposed


def _high_bit_depth_to_l(im: Image.Image) -> Image.Image:
    arr = np.asarray(im, dtype=np.float64)
    hi = float(arr.max()) if arr.size else 0.0
    if im.mode == "F":
        lo = float(arr.min()) if arr.size else 0.0
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    elif hi > 255:
        arr = arr / 257.0 if hi <= 65535 else arr / (hi / 255.0)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")


def to_channels(im: Image.Image, channels: int) -> Image.Image:
    """Convert any Pillow mode to ``L`` (channels=1) or ``RGB`` (channels=3), consistently.

    16-bit and float images are rescaled instead of clipped; transparent images are
    composited on white so that transparent pixels do not turn black.
    """
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        im = _high_bit_depth_to_l(im)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    target = "L" if channels == 1 else "RGB"
    return im if im.mode == target else im.convert(target)


def fit_square(im: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` and center-crop to a square (torchvision's eval preset)."""
    if im.size == (size, size):
        return im
    return ImageOps.fit(im, (size, size), method=Image.Resampling.BILINEAR)


#: Counts calls of :func:`decode_array` in this process (tests check that each file is decoded once).
DECODE_CALLS: list[str] = []
COUNT_DECODES = False


def decode_array(data: bytes, channels: int, size: int, path: str = "") -> np.ndarray:
    """The one pixel decode of a file's bytes: JPEG at reduced scale (``draft``), every other
    format at full size, EXIF orientation applied, converted and fitted to ``size x size``."""
    if COUNT_DECODES:
        DECODE_CALLS.append(path)
    im = open_header(data)
    if im.format == "JPEG":
        im.draft("L" if channels == 1 else "RGB", (size, size))
    _load(im)
    try:
        ImageOps.exif_transpose(im, in_place=True)  # a copy only when it does rotate (decoded once, owned here)
    except Exception:  # broken EXIF must not make a readable image unusable
        pass
    try:
        im = fit_square(to_channels(im, channels), size)
    except Exception as exc:  # Pillow's conversion of this file's mode or data: the file's problem
        raise ImageDecodeError("corrupt", f"cannot convert the image: {exc or type(exc).__name__}") from None
    arr = np.array(im, dtype=np.uint8)  # a writable copy: callers hand it to torch
    return arr[:, :, None] if arr.ndim == 2 else arr


def load_array(path: str, channels: int, size: int) -> np.ndarray:
    """Decode a file into a ``size x size x channels`` uint8 array ready for the tensor cache."""
    return decode_array(read_bytes(path), channels, size, path)
