"""Where a photo's time goes in the deep pass, against the single-thread reference, file by file.

    python bench/photo_folder.py /tmp/photo-300 --photos 300 --problems
    python bench/photo_profile.py /tmp/photo-300 [--files 120] [--repeats 3] [--min-pixels 2000000]

For each large photo (at least ``--min-pixels``) it times, interleaved so that drift and caches hit
both alike: the reference (Pillow opens the file and decodes with ``draft`` to 224 px, as
``photo_speed.py``'s reference does), then the engine's steps on the same file: reading the bytes,
the content digest (and SHA-256 beside it, the digest it replaced), parsing the header, decoding,
EXIF orientation, the fit to the canonical square, and ``decode_array`` whole. Prints milliseconds
per file for each. One process, one core: the deep pass runs this per worker.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import time

import numpy as np
from PIL import Image, ImageOps

from balancelab.engine.data.canonical import CANONICAL_SIZE
from balancelab.engine.data.deep_check import content_digest
from balancelab.engine.data.imageio import _load, decode_array, fit_square, open_header, read_bytes, to_channels


def photos(root: str, limit: int, min_pixels: int) -> list[str]:
    found = []
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            if not name.lower().endswith((".jpg", ".jpeg")):
                continue
            path = os.path.join(dirpath, name)
            try:
                with Image.open(path) as im:
                    if im.width * im.height < min_pixels:
                        continue
                    im.draft("RGB", (CANONICAL_SIZE, CANONICAL_SIZE))
                    im.load()  # the planted truncated and corrupt files are not photos to time
                found.append(path)
            except Exception:
                continue
    return sorted(found)[:limit]


def profile(files: list[str], repeats: int) -> dict[str, float]:
    """Milliseconds per file for the reference and each engine step."""
    size = CANONICAL_SIZE
    totals: dict[str, float] = {}
    clock = time.perf_counter

    def add(name: str, seconds: float) -> None:
        totals[name] = totals.get(name, 0.0) + seconds

    for _ in range(repeats):
        for path in files:
            t0 = clock()
            with Image.open(path) as im:
                im.draft("RGB", (size, size))
                im.load()
            t1 = clock()
            data = read_bytes(path)
            t2 = clock()
            content_digest(data)
            t3 = clock()
            hashlib.sha256(data).digest()
            t4 = clock()
            im = open_header(data)
            im.draft("RGB", (size, size))
            t5 = clock()
            _load(im)
            t6 = clock()
            ImageOps.exif_transpose(im, in_place=True)
            t7 = clock()
            np.array(fit_square(to_channels(im, 3), size), dtype=np.uint8)
            t8 = clock()
            decode_array(data, 3, size, path)
            t9 = clock()
            for name, seconds in (("reference: open + draft decode from the file", t1 - t0), ("read bytes", t2 - t1),
                                  ("content digest (BLAKE3)", t3 - t2), ("SHA-256, for comparison", t4 - t3),
                                  ("header", t5 - t4), ("decode (draft)", t6 - t5), ("EXIF orientation", t7 - t6),
                                  ("fit to the square + copy", t8 - t7), ("decode_array whole", t9 - t8)):
                add(name, seconds)
    n = max(1, repeats * len(files))
    return {name: 1000.0 * seconds / n for name, seconds in totals.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root")
    ap.add_argument("--files", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-pixels", type=int, default=2_000_000)
    args = ap.parse_args()
    files = photos(args.root, args.files, args.min_pixels)
    if not files:
        raise SystemExit(f"error: no JPEG of at least {args.min_pixels} pixels under {args.root}")
    ms = profile(files, args.repeats)
    for name, value in ms.items():
        print(f"{name:48s} {value:7.2f} ms/file")
    engine = ms["read bytes"] + ms["content digest (BLAKE3)"] + ms["decode_array whole"]
    reference = ms["reference: open + draft decode from the file"]
    print(f"{'engine per file (read + digest + decode_array)':48s} {engine:7.2f} ms/file = {engine / reference:.2f}x "
          f"the reference; two cores at most {2 * reference / engine:.2f}x the single-thread reference")


if __name__ == "__main__":
    main()
