"""Dataset inspection: count, verify and summarise an ImageFolder tree.

:func:`scan` is a generator of progress events ending in ``Finished(ScanResult)``.
Every file is read once: its bytes are hashed (exact duplicates, split leakage) and
fully decoded (corrupt/truncated files). Large trees are verified by a small process
pool, because Pillow's per-file work is mostly Python and holds the GIL.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Iterator

from balancelab.engine.data.layout import FileCandidate, Layout, LayoutError, Problem, discover
from balancelab.engine.core.events import Failed, Finished, Progress, StopToken, drain
from balancelab.engine.data.worker_pool import process_pool
from balancelab.engine.data.imageio import GRAYSCALE_MODES, ImageDecodeError, inspect_bytes, read_bytes

__all__ = ["ImageEntry", "ScanResult", "scan", "scan_steps", "scan_sync", "LayoutError"]

#: Below this many files the pool's start-up costs more than it saves.
PARALLEL_THRESHOLD = 2000
CHUNK = 512


@dataclass
class ImageEntry:
    path: str  # relative to the root
    split: str
    label: str
    width: int
    height: int
    mode: str
    n_bytes: int
    digest: str


@dataclass
class ScanResult:
    root: str
    layout: str
    split_classes: dict[str, list[str]]
    images: list[ImageEntry]
    problems: list[Problem]
    ignored: list[Problem] = field(default_factory=list)
    duplicate_groups: list[list[str]] = field(default_factory=list)
    complete: bool = True

    @property
    def splits(self) -> list[str]:
        return list(self.split_classes)

    @property
    def classes(self) -> list[str]:
        return sorted({c for names in self.split_classes.values() for c in names})

    def class_counts(self, split: str | None = None) -> dict[str, int]:
        names = self.split_classes.get(split, []) if split else self.classes
        counts = dict.fromkeys(names, 0)
        for img in self.images:
            if split is None or img.split == split:
                counts[img.label] = counts.get(img.label, 0) + 1
        return dict(sorted(counts.items()))

    def imbalance_ratio(self, split: str | None = None) -> float:
        """Largest over smallest non-empty class of ``split``; None pools every split (mixes them: a
        balanced test split hides an imbalanced train split, so the headline is the training split's)."""
        return imbalance_ratio(self.class_counts(split).values())

    @property
    def training_split(self) -> str | None:
        """The split a model trains on: ``train``, or the whole folder in a flat layout; None when absent."""
        return next((s for s in ("train", "all") if s in self.split_classes), None)

    def imbalance_ratios(self) -> dict[str, float]:
        return {s: self.imbalance_ratio(s) for s in self.split_classes}

    def describe_imbalance(self) -> str:
        """One line, training split first: 'train 51.0:1 (val 10.0:1, test 1.0:1)'."""
        ratios = self.imbalance_ratios()
        head = self.training_split
        others = [f"{s} {r:.1f}:1" for s, r in ratios.items() if s != head]
        if head is None:
            return ", ".join(others) or "no images"
        return f"{head} {ratios[head]:.1f}:1" + (f" ({', '.join(others)})" if others else "")

    @property
    def grayscale(self) -> bool:
        return bool(self.images) and all(img.mode in GRAYSCALE_MODES for img in self.images)

    def to_json_dict(self) -> dict:
        return {
            "root": self.root,
            "layout": self.layout,
            "classes": [{"name": n, "count": c} for n, c in self.class_counts().items()],
            "total_images": len(self.images),
            "imbalance_ratio": self.imbalance_ratio(),  # all splits pooled (kept for compatibility)
            "training_split": self.training_split,
            "training_imbalance_ratio": self.imbalance_ratio(self.training_split) if self.training_split else None,
            "imbalance_ratio_per_split": self.imbalance_ratios(),
            "splits": {s: [{"name": n, "count": c} for n, c in self.class_counts(s).items()] for s in self.split_classes},
            "problems": [p.to_dict() for p in self.problems],
            "ignored": [p.to_dict() for p in self.ignored],
            "duplicate_groups": self.duplicate_groups,
            "image_modes": dict(Counter(img.mode for img in self.images)),
            "image_sizes": size_summary(self.images),
            "complete": self.complete,
        }


def imbalance_ratio(counts) -> float:
    """Largest class count over smallest non-empty class count (1.0 for one class, 0.0 for none)."""
    nonzero = [c for c in counts if c > 0]
    return float(max(nonzero)) / float(min(nonzero)) if nonzero else 0.0


def size_summary(images: list[ImageEntry]) -> dict:
    if not images:
        return {}
    widths = sorted(i.width for i in images)
    heights = sorted(i.height for i in images)
    mid = len(images) // 2
    return {
        "min": [widths[0], heights[0]],
        "median": [widths[mid], heights[mid]],
        "max": [widths[-1], heights[-1]],
        "distinct_sizes": len({(i.width, i.height) for i in images}),
    }


def _verify_one(abs_path: str) -> tuple:
    """Read, hash and fully decode one file. Returns ("ok", info..., digest) or ("bad", kind, reason)."""
    try:
        data = read_bytes(abs_path)
        info = inspect_bytes(data)
    except ImageDecodeError as exc:
        if exc.kind == "missing":
            return ("bad", "missing", "file disappeared during the scan")
        return ("bad", exc.kind, exc.reason)
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    return ("ok", info.width, info.height, info.mode, len(data), digest)


def _verify_chunk(paths: list[str]) -> list[tuple]:
    return [_verify_one(p) for p in paths]


class _Verifier:
    """Verifies files in chunks, in a process pool once the tree is known to be large.

    Chunks are submitted while the tree is still being listed (``feed``), so listing and
    decoding overlap; ``results`` then yields (start, results) as chunks finish.
    """

    def __init__(self, workers: int, stop: StopToken) -> None:
        self.workers = workers
        self.stop = stop
        self.pool: ProcessPoolExecutor | None = None
        self.futures: dict = {}
        self.submitted = 0

    def feed(self, files: list[FileCandidate], final: bool = False) -> None:
        if self.pool is None and self.workers > 1 and len(files) >= PARALLEL_THRESHOLD:
            self.pool = process_pool(self.workers)
        if self.pool is None or self.stop.requested:
            return
        while len(files) - self.submitted >= CHUNK or (final and self.submitted < len(files)):
            start = self.submitted
            paths = [f.abs_path for f in files[start:start + CHUNK]]
            self.futures[self.pool.submit(_verify_chunk, paths)] = start
            self.submitted += len(paths)

    def results(self, files: list[FileCandidate]) -> Iterator[tuple[int, list[tuple]]]:
        self.feed(files, final=True)
        try:
            if self.pool is None:
                for start in range(0, len(files), CHUNK):
                    if self.stop.requested:
                        return
                    yield start, _verify_chunk([f.abs_path for f in files[start:start + CHUNK]])
                return
            pending = dict(self.futures)
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield pending.pop(fut), fut.result()
                if self.stop.requested:
                    return
        finally:
            self.close()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def _duplicates_and_leakage(images: list[ImageEntry]) -> tuple[list[list[str]], list[Problem]]:
    by_digest: dict[str, list[ImageEntry]] = defaultdict(list)
    for img in images:
        by_digest[img.digest].append(img)
    groups, problems = [], []
    for members in by_digest.values():
        if len(members) < 2:
            continue
        paths = sorted(m.path for m in members)
        groups.append(paths)
        splits = sorted({m.split for m in members})
        labels = sorted({m.label for m in members})
        for path in paths[1:]:
            problems.append(Problem(path, "duplicate", f"identical content to {paths[0]}"))
        if len(splits) > 1:
            problems.append(Problem(paths[0], "leakage", f"same image in splits {', '.join(splits)}: {', '.join(paths)}"))
        if len(labels) > 1:
            problems.append(Problem(paths[0], "conflicting-labels", f"same image labelled {', '.join(labels)}"))
    groups.sort()
    return groups, problems


def _layout_problems(layout: Layout, counts: Counter) -> list[Problem]:
    problems = []
    all_classes = sorted({c for names in layout.classes.values() for c in names})
    for split, names in layout.classes.items():
        folder = layout.split_dirs[split]
        for name in names:
            if counts[(split, name)] == 0:
                path = name if folder == "." else f"{folder}/{name}"
                problems.append(Problem(path, "empty-class", "class folder has no readable images"))
        if len(layout.classes) > 1:
            for name in all_classes:
                if name not in names:
                    problems.append(Problem(folder, "class-mismatch", f"class '{name}' is missing from split '{split}'"))
    return problems


def scan(root: str, stop: StopToken | None = None, workers: int | None = None) -> Iterator:
    """Scan ``root``; yields Progress events and ends with Finished(ScanResult) or Failed."""
    stop = stop or StopToken()
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    yield Progress("listing", 0, 0, f"Listing {root}")
    verifier = _Verifier(workers, stop)
    try:
        layout = discover(root, on_files=verifier.feed)
    except LayoutError as exc:
        verifier.close()
        yield Failed(str(exc))
        return
    files = layout.files
    total = len(files)
    yield Progress("verifying", 0, total, f"Verifying {total} files")
    results: list[tuple | None] = [None] * total
    done = 0
    for start, chunk_results in verifier.results(files):
        results[start:start + len(chunk_results)] = chunk_results
        done += len(chunk_results)
        yield Progress("verifying", done, total)
    images, problems = [], list(layout.problems)
    for cand, res in zip(files, results):
        if res is None:
            continue
        if res[0] == "ok":
            _, w, h, mode, n_bytes, digest = res
            images.append(ImageEntry(cand.rel_path, cand.split, cand.label, w, h, mode, n_bytes, digest))
        else:
            problems.append(Problem(cand.rel_path, res[1], res[2]))
    counts = Counter((img.split, img.label) for img in images)
    problems.extend(_layout_problems(layout, counts))
    groups, dup_problems = _duplicates_and_leakage(images)
    problems.extend(dup_problems)
    problems.sort(key=lambda p: (p.path, p.kind))
    result = ScanResult(
        root=layout.root,
        layout=layout.kind,
        split_classes=layout.classes,
        images=images,
        problems=problems,
        ignored=layout.ignored,
        duplicate_groups=groups,
        complete=not stop.requested,
    )
    yield Finished(result, stopped=stop.requested)


def scan_steps(root: str, stop: StopToken | None = None, workers: int | None = None):
    """Use inside another generator: ``result = yield from scan_steps(...)`` forwards the scan's
    Progress events and returns its result (None when stopped); raises LayoutError."""
    for event in scan(root, stop=stop, workers=workers):
        if isinstance(event, Failed):
            raise LayoutError(event.message)
        if isinstance(event, Finished):
            return None if event.stopped else event.result
        yield event
    return None


def scan_for_task(root: str, stop: StopToken | None = None):
    """``scan_steps`` for a task generator that ends in Finished/Failed: an unusable root becomes
    a Failed event and a stop a stopped Finished; returns the result, or None (the caller returns)."""
    try:
        result = yield from scan_steps(root, stop=stop)
    except LayoutError as exc:
        yield Failed(str(exc))
        return None
    if result is None:
        yield Finished(None, stopped=True)
    return result


def scan_sync(root: str, workers: int | None = None) -> ScanResult:
    """Run a scan to completion; raise LayoutError when the root is not a dataset."""
    return drain(scan_steps(root, workers=workers))
