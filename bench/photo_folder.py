"""Build a seeded photo-scale ImageFolder from real photographs that ship with scikit-learn.

    python bench/photo_folder.py /tmp/photo-200 --photos 200 [--seed 0] [--megapixels 12] [--workers 2]

Sources: ``sklearn.datasets.load_sample_images`` (china.jpg, flower.jpg: two real 640x427 photos).
Each file is a random crop of one of them, rescaled and given sensor-like noise:

- 70%: camera/phone JPEG, ``--megapixels`` (default 12: 4000x3000), quality 90, EXIF with an
  embedded 160x120 thumbnail; half of them portrait (a third of those stored landscape with
  EXIF orientation 6, as phones do);
- 15%: 1024x1024 PNG (every other one grayscale, like medical scans);
- 15%: web-size JPEG, 640 to 2048 px on the long side, no EXIF.

Classes are long-tailed (``--classes`` classes, largest/smallest = ``--imbalance``), split 90/10
into train/ and test/. ``--problems`` also plants one zero-byte, one truncated JPEG and one PNG with corrupt pixel data.
For the memory check at 8,000 photos ``--megapixels 1`` keeps the folder small: the per-file
memory of the scan does not depend on the file size, only the time does (stated in its report).
"""
from __future__ import annotations

import argparse
import io
import os
import struct
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image


def class_counts(total: int, classes: int, imbalance: float) -> list[int]:
    """Exponentially decaying counts summing to ``total``: first/last ~= ``imbalance``."""
    weights = np.array([imbalance ** (-k / max(1, classes - 1)) for k in range(classes)])
    counts = np.maximum(1, np.floor(weights / weights.sum() * total)).astype(int)
    counts[0] += total - counts.sum()
    return [int(c) for c in counts]


def exif_with_thumbnail(thumb_jpeg: bytes, orientation: int = 1) -> bytes:
    """A minimal little-endian EXIF block: IFD0 (Orientation) and IFD1 pointing at a JPEG thumbnail."""
    ifd0_at = 8
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 3, 1, orientation) + b""
    ifd1_at = ifd0_at + len(ifd0) + 4
    thumb_at = ifd1_at + 2 + 2 * 12 + 4
    ifd0 += struct.pack("<I", ifd1_at)
    ifd1 = struct.pack("<H", 2) + struct.pack("<HHII", 0x0201, 4, 1, thumb_at) \
        + struct.pack("<HHII", 0x0202, 4, 1, len(thumb_jpeg)) + struct.pack("<I", 0)
    return b"Exif\0\0" + b"II*\0" + struct.pack("<I", ifd0_at) + ifd0 + ifd1 + thumb_jpeg


def _sources() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return [np.asarray(im) for im in load_sample_images().images]


_SOURCES: list[np.ndarray] = []


def _photo(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    src = _SOURCES[int(rng.integers(len(_SOURCES)))]
    h, w = src.shape[:2]
    ch, cw = int(h * rng.uniform(0.5, 1.0)), int(w * rng.uniform(0.5, 1.0))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    im = Image.fromarray(src[y:y + ch, x:x + cw]).resize(size, Image.Resampling.BICUBIC)
    arr = np.asarray(im, dtype=np.int16)
    noise = rng.normal(0, rng.uniform(3, 8), size=(size[1], size[0], 1)).astype(np.int16)  # sensor noise, per pixel
    return Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8))


def make_file(task: tuple) -> str:
    path, seed, index, megapixels = task
    rng = np.random.default_rng([seed, index])
    kind = rng.uniform()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if kind < 0.70:
        long_side = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
        size = (long_side, long_side * 3 // 4)
        portrait = rng.uniform() < 0.5
        im = _photo(rng, size[::-1] if portrait else size)
        orientation = 1
        if portrait and rng.uniform() < 1 / 3:  # stored landscape, shown portrait: EXIF orientation 6
            im, orientation = im.transpose(Image.Transpose.ROTATE_90), 6
        thumb = im.copy()
        thumb.thumbnail((160, 160))
        buf = io.BytesIO()
        thumb.save(buf, "JPEG", quality=80)
        im.save(path + ".jpg", "JPEG", quality=90, exif=exif_with_thumbnail(buf.getvalue(), orientation))
        return path + ".jpg"
    if kind < 0.85:
        im = _photo(rng, (1024, 1024))
        if index % 2:
            im = im.convert("L")
        im.save(path + ".png", "PNG", compress_level=1)
        return path + ".png"
    long_side = int(rng.integers(640, 2049))
    short = int(long_side * rng.uniform(0.56, 0.8))
    im = _photo(rng, (long_side, short) if rng.uniform() < 0.5 else (short, long_side))
    im.save(path + ".jpg", "JPEG", quality=int(rng.integers(75, 95)))
    return path + ".jpg"


def _init() -> None:
    _SOURCES[:] = _sources()


def plant_problems(root: str, first_class: str) -> None:
    folder = os.path.join(root, "train", first_class)
    good = sorted(f for f in os.listdir(folder) if f.endswith(".jpg"))[0]
    data = open(os.path.join(folder, good), "rb").read()
    open(os.path.join(folder, "zz_empty.jpg"), "wb").close()
    with open(os.path.join(folder, "zz_cut.jpg"), "wb") as f:
        f.write(data[: len(data) // 2])
    png = io.BytesIO()
    Image.fromarray(np.asarray(Image.open(os.path.join(folder, good)).reduce(8))).save(png, "PNG")
    broken = bytearray(png.getvalue())
    at = broken.index(b"IDAT") + 40
    broken[at:at + 16] = bytes(16)  # damaged pixel data (bad IDAT checksum), header and IEND intact
    with open(os.path.join(folder, "zz_corrupt.png"), "wb") as f:
        f.write(bytes(broken))


def build(root: str, photos: int, seed: int, classes: int, imbalance: float, megapixels: float, workers: int,
          problems: bool) -> int:
    if os.path.exists(root) and os.listdir(root):
        raise SystemExit(f"{root} exists and is not empty")
    names = [f"class_{k:02d}" for k in range(classes)]
    tasks = []
    for name, count in zip(names, class_counts(photos, classes, imbalance)):
        n_test = max(1, count // 10) if count > 1 else 0
        for i in range(count):
            split = "test" if i < n_test else "train"
            tasks.append((os.path.join(root, split, name, f"{name}_{i:05d}"), seed, len(tasks), megapixels))
    with ProcessPoolExecutor(max_workers=workers, initializer=_init) as pool:
        for done, _ in enumerate(pool.map(make_file, tasks, chunksize=4), 1):
            if done % 100 == 0:
                print(f"{done}/{len(tasks)}", file=sys.stderr)
    if problems:
        plant_problems(root, names[0])
    return len(tasks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root")
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--imbalance", type=float, default=20.0)
    ap.add_argument("--megapixels", type=float, default=12.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--problems", action="store_true")
    args = ap.parse_args()
    n = build(args.root, args.photos, args.seed, args.classes, args.imbalance, args.megapixels, args.workers,
              args.problems)
    print(f"{n} photos in {args.root}")


if __name__ == "__main__":
    main()
