"""Scan speed: BalanceLab's full scan (listing + read + hash + full decode of every file) against
a bare Pillow loop over the same files, measured in one run on warm file caches.

    python bench/scan_bench.py /tmp/mnist_png [--repeats 3]

The bare loop is timed on a precomputed file list (the listing is not counted for it; it is
for the scan). Two bare variants are reported: Image.open only (reads the header) and
Image.open + load (decodes the pixels, single process).
"""
from __future__ import annotations

import argparse
import os
import time


from PIL import Image

from balancelab.engine.data.scanner import scan_sync


def list_files(root: str) -> list[str]:
    out = []
    for dirpath, _, names in os.walk(root):
        out += [os.path.join(dirpath, n) for n in names]
    return out


def bare_open(files: list[str]) -> float:
    t = time.perf_counter()
    for p in files:
        with Image.open(p) as im:
            im.size
    return time.perf_counter() - t


def bare_open_load(files: list[str]) -> float:
    t = time.perf_counter()
    for p in files:
        with Image.open(p) as im:
            im.load()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    files = list_files(args.root)
    bare_open(files)  # warm the OS file cache
    best = {"open": 1e9, "open+load": 1e9, "scan": 1e9}
    for _ in range(args.repeats):
        best["open"] = min(best["open"], bare_open(files))
        best["open+load"] = min(best["open+load"], bare_open_load(files))
        t = time.perf_counter()
        result = scan_sync(args.root, workers=args.workers)
        best["scan"] = min(best["scan"], time.perf_counter() - t)
    print(f"files: {len(files)}  readable images: {len(result.images)}  problems: {len(result.problems)}  cpus: {os.cpu_count()}")
    print(f"bare Image.open loop:          {best['open']:.2f} s")
    print(f"bare Image.open + load loop:   {best['open+load']:.2f} s")
    print(f"BalanceLab scan (verify+hash): {best['scan']:.2f} s")
    print(f"scan / bare open   = {best['scan'] / best['open']:.2f}x (target < 2x)")
    print(f"scan / open + load = {best['scan'] / best['open+load']:.2f}x")


if __name__ == "__main__":
    main()
