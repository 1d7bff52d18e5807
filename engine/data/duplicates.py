"""Exact and near-duplicate images, and duplicates that leak across splits.

Exact duplicates come from the scan's content hashes. Near duplicates use a 256-bit
difference hash (dHash: brightness gradients of a 17x17 grayscale thumbnail, robust to
resizing, re-encoding and small brightness changes). Pairs within ``threshold`` differing
bits are found with multi-index hashing (split the hash into threshold+1 chunks: two hashes
that close agree exactly on at least one chunk), so 100k images need no all-pairs loop, and
grouped around leaders so that chains of look-alikes never merge unrelated images.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from balancelab.engine.core.events import Finished, StopToken
from balancelab.engine.data.scanner import ScanResult
from balancelab.engine.data.decode_cache import decode_images

HASH_ROWS = 16  # dHash of a 17x17 grayscale thumbnail: 16 rows x 16 horizontal gradients = 256 bits
DEFAULT_THRESHOLD = 10  # differing bits (of 256) for two images to count as near duplicates


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


def dhash_words(arrays: np.ndarray) -> np.ndarray:
    """N x 17 x 17 x 1 uint8 thumbnails -> N x 4 uint64 difference hashes (256 bits)."""
    a = arrays[:, :HASH_ROWS, :, 0].astype(np.int16)
    bits = (a[:, :, 1:] > a[:, :, :-1]).reshape(len(a), -1)
    return np.packbits(bits, axis=1).view(">u8").astype(np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.bitwise_xor(a, b)).sum(axis=-1)


def near_pairs(words: np.ndarray, threshold: int) -> list[tuple[int, int, int]]:
    """(i, j, distance) for every pair within ``threshold`` bits: multi-index hashing, so only
    hashes that agree exactly on one of threshold+1 bit chunks are ever compared."""
    bits = np.unpackbits(words.astype(">u8").view(np.uint8), axis=1)
    chunks = np.array_split(np.arange(bits.shape[1]), threshold + 1)
    seen: set[tuple[int, int]] = set()
    pairs = []
    for c in chunks:
        keys = np.packbits(bits[:, c], axis=1)
        keys = [k.tobytes() for k in keys]
        buckets: dict[bytes, list[int]] = defaultdict(list)
        for i, k in enumerate(keys):
            buckets[k].append(i)
        for members in buckets.values():
            if len(members) < 2:
                continue
            m = np.array(members)
            for a in range(len(m) - 1):
                d = hamming(words[m[a]][None, :], words[m[a + 1:]])
                for b in np.flatnonzero(d <= threshold):
                    key = (int(m[a]), int(m[a + 1 + b]))
                    if key not in seen:
                        seen.add(key)
                        pairs.append((key[0], key[1], int(d[b])))
    return pairs


def leader_groups(n: int, pairs: list[tuple[int, int, int]]) -> list[int]:
    """Group id per image without transitive chains: an image joins the group of a *leader*
    within the threshold, so every member is close to its group's leader (no A~B~C~...~Z
    chain can merge unrelated images, which plain connected components would on look-alike
    data such as handwritten digits)."""
    group = list(range(n))
    leader = [True] * n
    assigned = [False] * n
    for i, j, _ in sorted(pairs, key=lambda p: (p[2], p[0], p[1])):
        a, b = (i, j) if i < j else (j, i)
        if leader[a] and not assigned[b] and group[a] == a:
            group[b], assigned[b], leader[b] = a, True, False
            assigned[a] = True
        elif leader[b] and not assigned[a] and group[b] == b:
            group[a], assigned[a], leader[a] = b, True, False
            assigned[b] = True
    return group


def find_duplicates(result: ScanResult, threshold: int = DEFAULT_THRESHOLD, stop: StopToken | None = None,
                    near: bool = True) -> Iterator:
    """Yield Progress events, then Finished(list[DuplicateGroup]) (exact groups first)."""
    images = result.images
    by_digest: dict[str, list[int]] = defaultdict(list)
    for i, img in enumerate(images):
        by_digest[img.digest].append(i)
    representative = sorted(ix[0] for ix in by_digest.values())  # one image per distinct content
    group_of_rep = {r: r for r in representative}
    distance: dict[int, int] = defaultdict(int)
    if near and len(representative) > 1:
        thumbs = None
        for ev in decode_images([os.path.join(result.root, images[i].path) for i in representative], 1, HASH_ROWS + 1,
                                stop=stop, phase="hashing"):
            if isinstance(ev, Finished):
                thumbs = ev.result
            else:
                yield ev
        if thumbs is None:
            yield Finished([], stopped=True)
            return
        ok = np.flatnonzero(thumbs.ok)
        words = dhash_words(np.asarray(thumbs.array)[ok])
        pairs = near_pairs(words, threshold)
        leaders = leader_groups(len(ok), pairs)
        for local, lead in enumerate(leaders):
            group_of_rep[representative[ok[local]]] = representative[ok[lead]]
        for a, b, d in pairs:
            if leaders[a] == leaders[b]:
                g = representative[ok[leaders[a]]]
                distance[g] = max(distance[g], d)
    members: dict[int, list[int]] = defaultdict(list)
    for ix in by_digest.values():
        members[group_of_rep[ix[0]]].extend(ix)
    groups = []
    for g, idx in members.items():
        if len(idx) < 2:
            continue
        kind = "exact" if len({images[i].digest for i in idx}) == 1 else "near"
        groups.append(DuplicateGroup(
            paths=sorted(images[i].path for i in idx), kind=kind,
            splits=sorted({images[i].split for i in idx}), labels=sorted({images[i].label for i in idx}),
            max_distance=distance.get(g, 0) if kind == "near" else 0))
    groups.sort(key=lambda g: (g.kind != "exact", not g.leaks, g.paths))
    yield Finished(groups)


def group_keys(result: ScanResult, groups: list[DuplicateGroup]) -> dict[str, str]:
    """Path -> group key (the group's first path, or the path itself), for split grouping."""
    keys = {img.path: img.digest for img in result.images}
    for g in groups:
        for p in g.paths:
            keys[p] = "group:" + g.paths[0]
    return keys
