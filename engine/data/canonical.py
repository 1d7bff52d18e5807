"""The canonical decoded copy of a dataset folder, written by the deep check, read by everyone else.

Every readable image of the folder is decoded once (:mod:`deep_check`) to a square of
:data:`CANONICAL_SIZE` px (fewer when no image of the folder is that large), which is what
the largest default model input needs (224 px: the pretrained torchvision models). Any model
size up to that is derived from it by a resize, any split by picking rows: training a second
model, evaluating, thumbnails and opening the folder again decode nothing.

On disk it is an ordinary decoded-cache entry (:mod:`cache_files`, content-addressed by the
files' stat signatures, pruned like the others) whose index also lists each file's relative
path, signature and content digest; a small pointer ``<sha1 of the root>.json`` names the
entry of the folder's latest deep check. Everything read back is validated; a mismatch is a miss.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from balancelab.engine.core.paths import usable_cache_dir
from balancelab.engine.data.cache_files import (CACHE_VERSION, file_signatures, key_from_signatures, load_cached,
                                                 publish_bytes)
from balancelab.engine.core.untrusted import read_json

#: The default input of the pretrained torchvision models, the largest but Inception v3's 299 px
#: (a test keeps this true). A 299 px canonical copy would cost 1.8x the disk and memory of every
#: folder for one model; an inception_v3 run decodes its own 299 px cache once instead.
CANONICAL_SIZE = 224
#: How many folders above the common folder of a set of paths may hold the dataset root.
_ROOT_SEARCH_DEPTH = 4

__all__ = ["CANONICAL_SIZE", "Canonical", "canonical_shape", "derive", "find_covering", "load_canonical",
           "pointer_name", "write_pointer"]


@dataclass
class Canonical:
    """A deep-checked folder: row ``rows[rel]`` of ``array`` is file ``rel``, decoded."""

    root: str
    key: str
    array: np.ndarray  # N x S x S x C uint8, memory-mapped
    rel_paths: list[str]
    sigs: list[str]
    ok: np.ndarray
    reasons: dict[int, str]
    digests: list[str]

    def __post_init__(self) -> None:
        self.rows = {rel: i for i, rel in enumerate(self.rel_paths)}

    @property
    def size(self) -> int:
        return int(self.array.shape[1])

    @property
    def channels(self) -> int:
        return int(self.array.shape[3])

    def row_of(self, abs_path: str, sig: str | None = None) -> int | None:
        """The row of ``abs_path`` if it is still the file that was decoded (same stat signature)."""
        rel = os.path.relpath(abs_path, self.root).replace(os.sep, "/")
        row = self.rows.get(rel)
        if row is None:
            return None
        if sig is None:
            sig = file_signatures([abs_path])[0][0]
        return row if sig == self.sigs[row] else None


def canonical_shape(short_sides: list[int], grayscale: bool) -> tuple[int, int]:
    """(channels, size): grayscale folders stay one channel; tiny images are not blown up."""
    size = min(CANONICAL_SIZE, max(short_sides, default=CANONICAL_SIZE))
    return (1 if grayscale else 3), max(1, size)


def pointer_name(root: str) -> str:
    return hashlib.sha1(("canonical|" + os.path.abspath(root)).encode("utf-8", "surrogateescape")).hexdigest() + ".json"


def write_pointer(folder: str, root: str, key: str) -> None:
    try:
        publish_bytes(folder, pointer_name(root), json.dumps({"version": CACHE_VERSION, "root": root,
                                                               "canonical": key}).encode())
    except OSError:
        pass  # without a pointer the next run decodes again; nothing breaks


def load_canonical(root: str, cache_dir: str | None = None) -> Canonical | None:
    """The canonical copy of ``root`` named by its pointer, validated, or None."""
    folder, _ = usable_cache_dir(cache_dir)
    if folder is None:
        return None
    root = os.path.abspath(root)
    try:
        pointer = read_json(os.path.join(folder, pointer_name(root)), 4096)
        key = pointer.get("canonical") if isinstance(pointer, dict) else None
        if not isinstance(key, str) or len(key) != 40 or pointer.get("root") != root:
            return None
        meta = read_json(os.path.join(folder, f"{key}.json"), 64 * 1024**2)
        return _validated(root, key, folder, meta)
    except Exception:  # damaged, crafted or missing: a miss
        return None


def _validated(root: str, key: str, folder: str, meta) -> Canonical | None:
    if not isinstance(meta, dict):
        return None
    rel_paths, sigs, digests = meta.get("paths"), meta.get("sigs"), meta.get("digests")
    n, size, channels = meta.get("n"), meta.get("size"), meta.get("channels")
    if not (isinstance(n, int) and isinstance(size, int) and isinstance(channels, int) and channels in (1, 3)):
        return None
    for items in (rel_paths, sigs, digests):
        if not isinstance(items, list) or len(items) != n or not all(isinstance(x, str) for x in items):
            return None
    abs_paths = [os.path.join(root, r) for r in rel_paths]
    if any(not s.startswith(p + "|") for p, s in zip(abs_paths, sigs)):
        return None
    if key_from_signatures(sigs, channels, size) != key:
        return None
    loaded = load_cached(folder, key, abs_paths, (n, size, size, channels))
    if loaded is None:
        return None
    array, ok, failures = loaded
    rows = {p: i for i, p in enumerate(abs_paths)}
    reasons = {rows[p]: why for p, why in failures}
    return Canonical(root, key, array, rel_paths, sigs, ok, reasons, digests)


def find_covering(paths: list[str], cache_dir: str | None = None) -> tuple[Canonical, np.ndarray] | None:
    """A canonical copy holding every one of ``paths`` unchanged, and their rows; or None.
    The root is looked for at the paths' common folder and a few folders above it."""
    if not paths:
        return None
    try:
        folder = os.path.commonpath([os.path.dirname(p) for p in paths])
    except ValueError:
        return None
    sigs = file_signatures(paths)[0]
    for _ in range(_ROOT_SEARCH_DEPTH + 1):
        canon = load_canonical(folder, cache_dir)
        if canon is not None:
            rows = [canon.row_of(p, s) for p, s in zip(paths, sigs)]
            if all(r is not None for r in rows):
                return canon, np.array(rows, dtype=np.int64)
            return None
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return None


def derive(canon: Canonical, rows: np.ndarray, channels: int, size: int) -> tuple[np.ndarray, list[str | None]]:
    """Images ``rows`` at ``channels`` x ``size`` from the canonical copy (a resize, no decode)."""
    out = np.zeros((len(rows), size, size, channels), dtype=np.uint8)
    failed: dict[int, str] = {}
    order = np.argsort(rows, kind="stable")  # read the memory map front to back
    block = np.asarray(canon.array[rows[order]])
    for j, i in enumerate(order):
        row = int(rows[i])
        if not canon.ok[row]:
            failed[int(i)] = canon.reasons.get(row, "cannot decode")
            continue
        out[i] = _resized(block[j], channels, size)
    return out, [failed.get(i) for i in range(len(rows))]


def _resized(arr: np.ndarray, channels: int, size: int) -> np.ndarray:
    have = arr.shape[2]
    if have == channels and arr.shape[0] == size:
        return arr
    im = Image.fromarray(arr[:, :, 0] if have == 1 else arr, "L" if have == 1 else "RGB")
    if have != channels:
        im = im.convert("L" if channels == 1 else "RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    out = np.asarray(im, dtype=np.uint8)
    return out[:, :, None] if out.ndim == 2 else out
