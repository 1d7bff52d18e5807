"""Exact and near-duplicate images, and duplicates that leak across splits.

Exact duplicates come from the scan's content hashes. Near duplicates use a 256-bit DCT
perceptual hash (engine/data/phash.py): re-encoded, resized and brightened copies stay within a
few bits while different handwriting of look-alike digits does not, which the difference hash
could not separate (bench/curation_quality.py: precision .099 at its default); comparing with
the hashes of each image's 1-pixel shifts also finds shifted copies. Pairs within
``threshold`` bits are found by exact blocked search up to EXACT_SEARCH_LIMIT images and by
multi-index hashing beyond (split the hash into threshold+1 chunks: two hashes that close agree
exactly on at least one chunk), and grouped around leaders so that chains of look-alikes never
merge unrelated images. Pairs found another way (embedding similarity of a trained run,
engine/results/embeddings.py) can be merged in through ``extra_pairs``.

Each group is graded by the evidence that joined it (``DuplicateGroup.grade``, GRADES): *exact*
(identical content), *near* (every member within the hash threshold of its group's first image:
the pixels agree, a re-encoded / resized / brightened / shifted copy), *look-alike* (a member
joined only because a trained model sees it the same way: a cropped or shifted copy, or a
different picture of the same thing; look before excluding).
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from balancelab.engine.core.events import EventStream, Finished, StopToken, forward
from balancelab.engine.data.scanner import ScanResult
from balancelab.engine.data.phash import phash_files

# Differing bits (of 256) for two images to count as near duplicates: chosen on planted truth
# (bench/curation_quality.py, 5,000 MNIST digits + 100 near copies) for precision >= 0.98.
DEFAULT_THRESHOLD = 16
# Cosine distance of a trained run's embeddings below which two images are paired (graded
# look-alike unless the hash agrees; engine/results/embeddings.py). Measured on planted truth
# (bench/curation_quality.py, 5,000 MNIST test digits + 100 near copies, embeddings of a
# tiny-2conv label-issues fold model): at 0.003, 62 of the near copies and no unplanted pair;
# at 0.01, 75 and 110 unplanted pairs (different handwriting). Kept here so the CLI needs no torch.
DEFAULT_EMBEDDING_DISTANCE = 0.003
EXACT_SEARCH_LIMIT = 30000  # beyond this many distinct images, multi-index hashing
GRADES = {  # grade -> why, most certain first (the UI's tooltip and sort order)
    "exact": "identical file content",
    "near": "the perceptual hashes agree within the threshold: the same picture re-encoded, resized, "
            "brightened or shifted by a pixel",
    "look-alike": "only a trained model's embeddings are this close: a cropped or shifted copy, or a different "
                  "picture of the same thing; look before excluding",
}


@dataclass
class DuplicateGroup:
    paths: list[str]
    kind: str  # "exact" or "near"
    splits: list[str]
    labels: list[str]
    max_distance: int = 0  # hash bits between members (near groups)
    max_embedding_distance: float | None = None  # cosine distance, when embeddings joined a member
    hash_confirmed: bool = True  # every member is within the hash threshold of the group's leader

    @property
    def grade(self) -> str:
        if self.kind == "exact":
            return "exact"
        return "near" if self.hash_confirmed else "look-alike"

    @property
    def leaks(self) -> bool:
        return len(self.splits) > 1

    @property
    def conflicting(self) -> bool:
        return len(self.labels) > 1

    def to_dict(self) -> dict:
        return {"paths": self.paths, "kind": self.kind, "splits": self.splits, "labels": self.labels,
                "leakage": self.leaks, "conflicting_labels": self.conflicting, "max_distance": self.max_distance,
                "grade": self.grade, "max_embedding_distance": self.max_embedding_distance}


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.bitwise_xor(a, b)).sum(axis=-1, dtype=np.int16)


def exact_pairs(words: np.ndarray, threshold: int, views: np.ndarray | None = None) -> list[tuple[int, int, int]]:
    """(i, j, distance), i < j, for every pair within ``threshold`` bits: all pairs, in blocks
    of about a million comparisons (bounded memory). With ``views`` (V x N x 4, the hashes of
    each image's shifted views) the distance is the smallest over j's views too."""
    pairs = []
    block = max(8, 1_000_000 // max(1, len(words)))
    for a in range(0, len(words), block):
        d = hamming(words[a:a + block, None, :], words[None, a:, :])
        for v in (views if views is not None else ()):
            np.minimum(d, hamming(words[a:a + block, None, :], v[None, a:, :]), out=d)
        ii, jj = np.nonzero(d <= threshold)
        keep = jj > ii
        for i, j in zip(ii[keep], jj[keep]):
            pairs.append((a + int(i), a + int(j), int(d[i, j])))
    return pairs


def near_pairs(words: np.ndarray, threshold: int, views: np.ndarray | None = None) -> list[tuple[int, int, int]]:
    """(i, j, distance) for every pair within ``threshold`` bits: exact search (shift-tolerant
    with ``views``) for up to EXACT_SEARCH_LIMIT hashes, else multi-index hashing on the
    unshifted hashes, so only hashes that agree exactly on one of threshold+1 bit chunks are
    ever compared."""
    if len(words) <= EXACT_SEARCH_LIMIT:
        return exact_pairs(words, threshold, views)
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
                    near: bool = True, extra_pairs: list[tuple[str, str, float]] | None = None,
                    shifts: bool = True) -> EventStream[list[DuplicateGroup]]:
    """Yield Progress events, then Finished(list[DuplicateGroup]) (exact groups first).
    ``shifts``: also match 1-pixel shifted copies. ``extra_pairs`` are (path, path, embedding
    distance) pairs found another way; hash pairs take precedence when groups are formed."""
    images = result.images
    by_digest: dict[str, list[int]] = defaultdict(list)
    for i, img in enumerate(images):
        by_digest[img.digest].append(i)
    representative = sorted(ix[0] for ix in by_digest.values())  # one image per distinct content
    group_of_rep = {r: r for r in representative}
    distance: dict[int, int] = defaultdict(int)
    pairs: list[tuple[int, int, int]] = []  # over positions in ``representative``
    if near and len(representative) > 1:
        hashed = yield from forward(phash_files([os.path.join(result.root, images[i].path) for i in representative],
                                                stop=stop, shifts=shifts))
        if hashed is None:
            yield Finished([], stopped=True)
            return
        words, ok, views = hashed
        good = np.flatnonzero(ok)
        views = views[:, good] if views is not None else None
        pairs = [(int(good[a]), int(good[b]), d) for a, b, d in near_pairs(words[good], threshold, views)]
    hash_pairs = {(min(a, b), max(a, b)) for a, b, _ in pairs}
    embedding: dict[tuple[int, int], float] = {}
    if extra_pairs:
        digest_rep = {images[i].path: by_digest[images[i].digest][0] for i in range(len(images))}
        rep_pos = {r: k for k, r in enumerate(representative)}
        for a, b, d in extra_pairs:
            ra, rb = digest_rep.get(a), digest_rep.get(b)
            if ra is not None and rb is not None and ra != rb:
                key = (min(rep_pos[ra], rep_pos[rb]), max(rep_pos[ra], rep_pos[rb]))
                embedding[key] = min(float(d), embedding.get(key, float("inf")))
    emb_dist: dict[int, float] = {}
    unconfirmed: set[int] = set()
    if pairs or embedding:
        # hash pairs first (by bits), then embedding-only pairs: groups form around pixel evidence
        ordered = pairs + [(a, b, threshold + 1 + embedding[a, b]) for (a, b) in sorted(embedding) if (a, b) not in hash_pairs]
        leaders = leader_groups(len(representative), ordered)
        for local, lead in enumerate(leaders):
            group_of_rep[representative[local]] = representative[lead]
            if lead != local and (min(local, lead), max(local, lead)) not in hash_pairs:
                unconfirmed.add(representative[lead])
        for a, b, d in pairs:
            if leaders[a] == leaders[b]:
                g = representative[leaders[a]]
                distance[g] = max(distance[g], d)
        for (a, b), d in embedding.items():
            if leaders[a] == leaders[b]:
                g = representative[leaders[a]]
                emb_dist[g] = max(emb_dist.get(g, 0.0), d)
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
            max_distance=distance.get(g, 0) if kind == "near" else 0,
            max_embedding_distance=round(emb_dist[g], 6) if g in emb_dist else None, hash_confirmed=g not in unconfirmed))
    groups.sort(key=lambda g: (g.kind != "exact", not g.leaks, g.paths))
    yield Finished(groups)


def group_keys(result: ScanResult, groups: list[DuplicateGroup]) -> dict[str, str]:
    """Path -> group key (the group's first path, or the path itself), for split grouping."""
    keys = {img.path: img.digest for img in result.images}
    for g in groups:
        for p in g.paths:
            keys[p] = "group:" + g.paths[0]
    return keys
