"""Write the original MNIST idx files as a PNG ImageFolder (train/ and test/), optionally long-tailed.

    python bench/mnist_png.py --mnist ../shared/data/mnist --out /tmp/mnist_png
    python bench/mnist_png.py --mnist ../shared/data/mnist --out /tmp/mnist_lt --long-tail 100

Long-tailed: train class c keeps n_c = 5000 * ratio^(-c/9) images (the first ones in file
order); the test set is written as is.
"""
from __future__ import annotations

import argparse
import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    return read_idx(folder / f"{prefix}-images-idx3-ubyte.gz"), read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")


def write_split(images: np.ndarray, labels: np.ndarray, out: Path, keep: dict[int, int] | None = None) -> int:
    written = 0
    taken = {c: 0 for c in range(10)}
    for i, (img, y) in enumerate(zip(images, labels)):
        y = int(y)
        if keep is not None and taken[y] >= keep[y]:
            continue
        folder = out / str(y)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, "L").save(folder / f"{i:05d}.png", compress_level=1)
        taken[y] += 1
        written += 1
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", default="../shared/data/mnist", help="folder with the four idx .gz files")
    ap.add_argument("--out", required=True)
    ap.add_argument("--long-tail", type=float, default=0.0, help="imbalance ratio for the train split (0 = full)")
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        print(f"{out} exists, leaving it as is")
        return
    keep = None
    if args.long_tail:
        keep = {c: int(5000 * args.long_tail ** (-c / 9)) for c in range(10)}
    for split in ("train", "test"):
        images, labels = load_mnist(Path(args.mnist), split)
        n = write_split(images, labels, out / split, keep if split == "train" else None)
        print(f"{split}: {n} images")
    if keep:
        print("train counts:", keep)


if __name__ == "__main__":
    main()
