"""Exact and near-duplicate images, and duplicates that leak across splits.

Exact duplicates come from the scan's content hashes. Near duplicates use a 72-bit
difference hash (dHash: brightness gradients of a 9x9 grayscale thumbnail, robust to
resizing, re-encoding and small brightness changes). Pairs within ``threshold`` differing
bits are found with multi-index hashing (split the hash into threshold+1 chunks: two hashes
that close agree exactly on at least one chunk), so 100k images need no all-pairs loop.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .events import Finished, StopToken
from .scanner import ScanResult
from .tensor_cache import decode_images

HASH_SIZE = 9


@dataclass
class DuplicateGroup:
    paths: list[str]
    kind: str  # "exact" or "near"
    splits: list[str]
    labels: list[str]
    max_distance: int = 0

    @property
    def leaks(self) -> bool:
        return len(self.splits) > 1

    @property
    def conflicting(self) -> bool:
        return len(self.labels) > 1

    def to_dict(self) -> dict:
        return {"paths": self.paths, "kind": self.kind, "splits": self.splits, "labels": self.labels,
                "leakage": self.leaks, "conflicting_labels": self.conflicting, "max_distance": self.max_distance}


def dhash_bits(arrays: np.ndarray) -> np.ndarray:
    """N x 9 x 9 x 1 uint8 thumbnails -> N x 72 bool difference hashes."""
    a = arrays[..., 0].astype(np.int16)
    return (a[:, :, 1:] > a[:, :, :-1]).reshape(len(a), -1)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def near_pairs(bits: np.ndarray, threshold: int) -> list[tuple[int, int, int]]:
    """(i, j, distance) for every pair with Hamming distance <= threshold."""
    n, nbits = bits.shape
    chunks = np.array_split(np.arange(nbits), threshold + 1)
    weights = [1 << np.arange(len(c), dtype=np.int64) for c in chunks]
    seen: set[tuple[int, int]] = set()
    pairs = []
    for c, w in zip(chunks, weights):
        keys = bits[:, c].astype(np.int64) @ w
        buckets: dict[int, list[int]] = defaultdict(list)
        for i, k in enumerate(keys.tolist()):
            buckets[k].append(i)
        for members in buckets.values():
            if len(members) < 2 or len(members) > 2000:  # a flat-image bucket would be quadratic; skip it
                continue
            m = np.array(members)
            sub = bits[m]
            dist = (sub[:, None, :] != sub[None, :, :]).sum(axis=2)
            ii, jj = np.nonzero(np.triu(dist <= threshold, k=1))
            for a, b in zip(ii.tolist(), jj.tolist()):
                key = (int(m[a]), int(m[b]))
                if key not in seen:
                    seen.add(key)
                    pairs.append((key[0], key[1], int(dist[a, b])))
    return pairs


def find_duplicates(result: ScanResult, threshold: int = 4, stop: StopToken | None = None,
                    near: bool = True) -> Iterator:
    """Yield Progress events, then Finished(list[DuplicateGroup]) (exact groups first)."""
    images = result.images
    n = len(images)
    uf = _UnionFind(n)
    exact_root: dict[str, int] = {}
    for i, img in enumerate(images):
        if img.digest in exact_root:
            uf.union(exact_root[img.digest], i)
        else:
            exact_root[img.digest] = i
    distance = defaultdict(int)
    if near and n > 1:
        thumbs = None
        for ev in decode_images([os.path.join(result.root, img.path) for img in images], 1, HASH_SIZE,
                                stop=stop, phase="hashing"):
            if isinstance(ev, Finished):
                thumbs = ev.result
            else:
                yield ev
        if thumbs is None:
            yield Finished([], stopped=True)
            return
        bits = dhash_bits(np.asarray(thumbs.array))
        ok = np.flatnonzero(thumbs.ok)
        for a, b, d in near_pairs(bits[ok], threshold):
            i, j = int(ok[a]), int(ok[b])
            uf.union(i, j)
            distance[(i, j)] = d
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        members[uf.find(i)].append(i)
    groups = []
    for idx in members.values():
        if len(idx) < 2:
            continue
        digests = {images[i].digest for i in idx}
        kind = "exact" if len(digests) == 1 else "near"
        max_d = max((d for (a, b), d in distance.items() if a in idx and b in idx), default=0) if kind == "near" else 0
        groups.append(DuplicateGroup(
            paths=sorted(images[i].path for i in idx), kind=kind,
            splits=sorted({images[i].split for i in idx}), labels=sorted({images[i].label for i in idx}),
            max_distance=max_d))
    groups.sort(key=lambda g: (g.kind != "exact", not g.leaks, g.paths))
    yield Finished(groups)


def group_keys(result: ScanResult, groups: list[DuplicateGroup]) -> dict[str, str]:
    """Path -> group key (the group's first path, or the path itself), for split grouping."""
    keys = {img.path: img.digest for img in result.images}
    for g in groups:
        for p in g.paths:
            keys[p] = "group:" + g.paths[0]
    return keys
