"""Builders of small datasets for tests, including every kind of bad file the scanner reports."""
from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def write_png(path: Path, value: int = 128, size: int = 16, mode: str = "L", seed: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed if seed is not None else abs(hash(str(path))) % 2**32)
    channels = {"L": None, "RGB": 3, "RGBA": 4}[mode]
    shape = (size, size) if channels is None else (size, size, channels)
    arr = rng.integers(0, 255, shape, dtype=np.uint8)
    arr[0, 0] = value
    Image.fromarray(arr, mode).save(path)
    return path


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width x height`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def truncated_png_bytes(size: int = 64) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8), "L").save(buf, format="PNG")
    data = buf.getvalue()
    return data[: len(data) // 2]


def truncated_jpeg_bytes(size: int = 64) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), "RGB").save(buf, format="JPEG")
    data = buf.getvalue()
    return data[: len(data) // 2]


def make_problem_tree(root: Path) -> dict[str, str]:
    """A train/val/test tree with one planted problem of each kind; returns {relative path: kind}."""
    for split, per_class in (("train", {"cat": 6, "dog": 3}), ("val", {"cat": 2, "dog": 2}), ("test", {"cat": 2, "dog": 2})):
        for label, n in per_class.items():
            for i in range(n):
                write_png(root / split / label / f"{label}_{i}.png", seed=hash((split, label, i)) % 2**32)
    planted = {}

    def put(rel: str, data: bytes, kind: str) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        planted[rel] = kind

    put("train/cat/empty.png", b"", "zero-byte")
    put("train/cat/notes.jpg", b"this is a text file, not a jpeg\n", "not-image")
    put("train/dog/half.png", truncated_png_bytes(), "truncated")
    put("train/dog/half.jpg", truncated_jpeg_bytes(), "truncated")
    put("train/cat/bomb.png", bomb_png(20000, 20000), "decompression-bomb")
    (root / "train" / "bird").mkdir(parents=True)
    planted["train/bird"] = "empty-class"
    planted["val"] = "class-mismatch"  # 'bird' missing from val
    planted["test"] = "class-mismatch"
    # the same bytes in train and test: leakage + duplicate
    data = (root / "train" / "cat" / "cat_0.png").read_bytes()
    put("test/cat/copy_of_train.png", data, "leakage")
    return planted


def _save(img: Image.Image, path: Path, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)


def make_hostile_tree(root: Path) -> tuple[dict[str, str], set[str], set[str]]:
    """Every kind of hostile input in one train/test tree.

    Returns (problems {relative path: kind}, readable image paths, ignored paths).
    """
    rng = np.random.default_rng(7)
    readable: set[str] = set()

    def good(rel: str, img: Image.Image, **kw) -> None:
        _save(img, root / rel, **kw)
        readable.add(rel)

    def noise(mode: str, size=(24, 20)) -> Image.Image:
        w, h = size
        if mode == "L":
            return Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8), "L")
        return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB").convert(mode)

    for i in range(4):
        good(f"train/cat/plain_{i}.png", noise("RGB"))
        good(f"train/sea lion ø/plain_{i}.png", noise("RGB"))
        good(f"test/cat/plain_{i}.png", noise("RGB"))
        good(f"test/sea lion ø/plain_{i}.png", noise("RGB"))
    sixteen = Image.fromarray((rng.integers(0, 65535, (20, 24))).astype(np.uint16))
    good("train/cat/sixteen_bit.png", sixteen)
    good("train/cat/cmyk.jpg", noise("CMYK"), quality=90)
    pal = noise("RGB").convert("P", palette=Image.Palette.ADAPTIVE)
    pal.info["transparency"] = 0
    good("train/cat/palette.png", pal, transparency=0)
    good("train/cat/rgba.png", noise("RGBA"))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    good("train/cat/exif_rotated.jpg", noise("RGB", (30, 10)), exif=exif.tobytes())
    frames = [noise("RGB").convert("P") for _ in range(3)]
    (root / "train" / "cat").mkdir(parents=True, exist_ok=True)
    frames[0].save(root / "train/cat/animated.gif", save_all=True, append_images=frames[1:], duration=50)
    readable.add("train/cat/animated.gif")
    good("train/sea lion ø/ünïcode 猫 name.png", noise("L"))
    good("train/sea lion ø/with spaces  .png", noise("L"))
    good("train/cat/no_extension", noise("RGB"), format="PNG")
    good(os.fsdecode(b"train/cat/caf\xe9 latin-1 name.png"), noise("L"))  # not UTF-8: a lone surrogate in Python

    problems: dict[str, str] = {}

    def bad(rel: str, data: bytes, kind: str) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        problems[rel] = kind

    bad("train/cat/zero.png", b"", "zero-byte")
    bad("train/cat/text.jpg", b"hello, I am text\n" * 10, "not-image")
    bad("train/cat/trunc.png", truncated_png_bytes(), "truncated")
    bad("train/cat/trunc.jpg", truncated_jpeg_bytes(), "truncated")
    bad("train/sea lion ø/bomb.png", bomb_png(30000, 30000), "decompression-bomb")
    (root / "train" / "empty class").mkdir(parents=True)
    problems["train/empty class"] = "empty-class"
    problems["test"] = "class-mismatch"  # 'empty class' is missing from test
    good("train/only in train/a.png", noise("L"))
    good("train/only in train/b.png", noise("L"))

    ignored = set()
    for rel, data in (("train/cat/.DS_Store", b"\0\0\0\1Bud1"), ("train/cat/Thumbs.db", b"\xd0\xcf\x11\xe0"),
                      ("train/cat/.hidden.png", b"")):
        (root / rel).write_bytes(data)
        ignored.add(rel)
    (root / "train" / ".secret class").mkdir()
    ignored.add("train/.secret class")
    os.symlink("..", root / "train" / "cat" / "loop")  # points back at train/: a loop when followed
    return problems, readable, ignored
