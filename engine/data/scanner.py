"""Dataset inspection: count, verify and summarise an ImageFolder tree, in two passes.

:func:`scan` is a generator of events ending in ``Finished(ScanResult)``:

1. the *first look* reads each file's header and end marker only (:mod:`first_look`): classes,
   counts, splits, imbalance and structural problems at thousands of files per second, announced
   as ``FirstLook(result)`` so a view can show the class table at once;
2. the *deep check* (:mod:`deep_check`, skipped with ``deep=False``) then reads, hashes and
   decodes every file once, reports corrupt pixel data as ``ProblemsFound`` while it goes, finds
   exact duplicates and split leakage, and leaves the decoded images as the training cache.

Large trees are looked at by a process pool, because Pillow's per-file work is mostly Python.
"""
from __future__ import annotations

import os
from collections import Counter, defaultdict
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Iterator

from balancelab.engine.data.layout import FileCandidate, Layout, LayoutError, Problem, discover
from balancelab.engine.core.events import EventStream, Failed, Finished, forward, Progress, StopToken
from balancelab.engine.data.canonical import Canonical
from balancelab.engine.data.deep_check import ProblemsFound, deep_check
from balancelab.engine.data.first_look import check_headers
from balancelab.engine.data.worker_pool import process_pool
from balancelab.engine.data.imageio import GRAYSCALE_MODES

__all__ = ["FirstLook", "ImageEntry", "ProblemsFound", "ScanResult", "scan", "scan_steps", "scan_sync", "LayoutError"]

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
    digest: str  # deep_check.content_digest of the bytes; before the deep check "?" + path (unique: no false duplicates)


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
    deep_checked: bool = True  # False: from headers only (pixels not decoded, no duplicates found yet)
    canonical: Canonical | None = field(default=None, repr=False, compare=False)  # the decoded copy, if kept

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

    def left_out_files(self) -> list[tuple[str, str]]:
        """(path, why) of each file the scan found and left out of the images (corrupt, truncated,
        zero-byte, special, outside any class folder): a run's skipped.csv lists them, so a count of
        skipped files never reads 0 beside a scan that found some."""
        used = {img.path for img in self.images}
        return [(p.path, p.reason) for p in self.problems
                if p.path not in used and os.path.lexists(os.path.join(self.root, p.path))
                and not os.path.isdir(os.path.join(self.root, p.path))]

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
            "deep_checked": self.deep_checked,
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


@dataclass
class FirstLook:
    """The header-only scan result, while the deep check goes on: classes, counts, structure."""

    result: ScanResult


class _Verifier:
    """Looks at files' headers in chunks, in a process pool once the tree is known to be large.

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
            self.futures[self.pool.submit(check_headers, paths)] = start
            self.submitted += len(paths)

    def results(self, files: list[FileCandidate]) -> Iterator[tuple[int, list[tuple]]]:
        self.feed(files, final=True)
        try:
            if self.pool is None:
                for start in range(0, len(files), CHUNK):
                    if self.stop.requested:
                        return
                    yield start, check_headers([f.abs_path for f in files[start:start + CHUNK]])
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


def scan(root: str, stop: StopToken | None = None, workers: int | None = None, deep: bool = True,
         cache_dir: str | None = None) -> EventStream[ScanResult]:
    """Scan ``root``: Progress events, ``FirstLook`` (deep only), the deep check's Progress and
    ``ProblemsFound`` events, then Finished(ScanResult) or Failed. A stop during the deep check
    ends with the first look's result (``deep_checked`` False)."""
    stop = stop or StopToken()
    workers = workers if workers is not None else (os.cpu_count() or 1)
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
    yield Progress("first look", 0, total, f"Reading the headers of {total} files")
    results: list[tuple | None] = [None] * total
    done = 0
    for start, chunk_results in verifier.results(files):
        results[start:start + len(chunk_results)] = chunk_results
        done += len(chunk_results)
        yield Progress("first look", done, total)
    images, problems = [], list(layout.problems)
    for cand, res in zip(files, results):
        if res is None:
            continue
        if res[0] == "ok":
            _, w, h, mode, n_bytes = res
            images.append(ImageEntry(cand.rel_path, cand.split, cand.label, w, h, mode, n_bytes, "?" + cand.rel_path))
        else:
            problems.append(Problem(cand.rel_path, res[1], res[2]))
    first = _assemble(layout, images, problems, complete=not stop.requested, deep_checked=False)
    if not deep or stop.requested:
        yield Finished(first, stopped=stop.requested)
        return
    yield FirstLook(first)
    checked = yield from forward(deep_check(layout.root, [i.path for i in images], [i.n_bytes for i in images],
                                            [min(i.width, i.height) for i in images], first.grayscale, stop,
                                            workers, cache_dir))
    if checked is None:
        yield Finished(first, stopped=True)
        return
    kept = []
    for i, img in enumerate(images):
        if checked.ok[i]:
            img.digest = checked.digests[i]
            kept.append(img)
        else:
            kind, reason = checked.failures[i]
            problems.append(Problem(img.path, kind, reason))
    final = _assemble(layout, kept, problems, complete=True, deep_checked=True)
    final.canonical = checked.canonical
    yield Finished(final)


def _assemble(layout: Layout, images: list[ImageEntry], problems: list[Problem], complete: bool,
              deep_checked: bool) -> ScanResult:
    problems = list(problems)
    counts = Counter((img.split, img.label) for img in images)
    problems.extend(_layout_problems(layout, counts))
    groups: list[list[str]] = []
    if deep_checked:
        groups, dup_problems = _duplicates_and_leakage(images)
        problems.extend(dup_problems)
    problems.sort(key=lambda p: (p.path, p.kind))
    return ScanResult(root=layout.root, layout=layout.kind, split_classes=layout.classes, images=list(images),
                      problems=problems, ignored=layout.ignored, duplicate_groups=groups, complete=complete,
                      deep_checked=deep_checked)


def scan_steps(root: str, stop: StopToken | None = None, workers: int | None = None):
    """For task generators of other layers: ``result = yield from scan_steps(...)`` forwards the
    scan's Progress events and returns its result (None when stopped); raises LayoutError."""
    finished = None
    for event in scan(root, stop=stop, workers=workers):
        if isinstance(event, Failed):
            raise LayoutError(event.message)
        if isinstance(event, Finished):
            finished = event
        elif isinstance(event, Progress):
            yield event
    return None if finished is None or finished.stopped else finished.result


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


def scan_sync(root: str, workers: int | None = None, deep: bool = True, cache_dir: str | None = None) -> ScanResult:
    """Run a scan to completion; raise LayoutError when the root is not a dataset."""
    finished = None
    for event in scan(root, workers=workers, deep=deep, cache_dir=cache_dir):
        if isinstance(event, Failed):
            raise LayoutError(event.message)
        if isinstance(event, Finished):
            finished = event
    return finished.result
