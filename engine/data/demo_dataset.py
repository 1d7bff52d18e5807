"""The embedded demo: a long-tailed ImageFolder built from scikit-learn's real digits data.

Every install has scikit-learn, so the app can open on a useful, genuinely imbalanced
dataset in its first minute without any download.
"""
from __future__ import annotations

import contextlib
import filecmp
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from balancelab.engine.core.locks import FileLock, LockedError
from balancelab.engine.core.paths import demo_dataset_dir
from balancelab.engine.data.journal_store import JOURNAL_DIR, LOCK_NAME

DEMO_TEST_PER_CLASS = 30
DEMO_IMBALANCE = 15.0
DEMO_IMAGE_SIZE = 32
_MARKER = ".balancelab-demo"


def long_tail_counts(n_max: int, n_classes: int, ratio: float) -> list[int]:
    """n_c = n_max * ratio^(-c/(C-1)): the usual exponential long-tail profile."""
    if n_classes == 1:
        return [n_max]
    return [max(1, int(round(n_max * ratio ** (-c / (n_classes - 1))))) for c in range(n_classes)]


def _to_png(image8x8: np.ndarray, size: int) -> Image.Image:
    arr = np.clip(image8x8 * (255.0 / 16.0), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "L").resize((size, size), Image.Resampling.BICUBIC)


def build_demo_dataset(target: str | os.PathLike | None = None, seed: int = 0, force: bool = False) -> Path:
    """Write the demo to ``target`` (default: the user's data directory) and return its path;
    an existing demo is kept as it is unless ``force`` (see :func:`rebuild_demo_dataset`).

    Layout: ``train/<digit>/`` long-tailed (ratio 15:1), ``test/<digit>/`` balanced.
    Writing happens in a temporary folder renamed into place, so an interrupted build
    never leaves a half-written demo behind.
    """
    target = Path(target) if target is not None else demo_dataset_dir()
    if (target / _MARKER).exists() and not force:
        return target
    return rebuild_demo_dataset(target, seed)[0]


def rebuild_demo_dataset(target: str | os.PathLike, seed: int = 0) -> tuple[Path, Path | None]:
    """Build the demo into ``target`` afresh: (its path, where the previous demo was kept, or None).

    The previous demo goes only when it is exactly what the build writes. A demo the user has
    curated (a journal, excluded or relabelled images, added files) is theirs: it is kept beside
    the new one under a new name, never deleted."""
    target = Path(target).resolve()  # "." or ".." have no name to build a backup name from
    if target.exists() and any(target.iterdir()) and not (target / _MARKER).exists():
        raise FileExistsError(f"{target} exists and is not a BalanceLab demo dataset; choose an empty folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-", dir=target.parent))
    backup = None
    try:
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would make the dataset private to this user
        _write_demo(staging, seed)
        if not target.exists():
            os.replace(staging, target)
            return target, None
        # the dataset's journal lock, held from the comparison to the rename: no journaled move of
        # another process (the app open on the demo) can slip in between
        journal = target / JOURNAL_DIR  # a link there is no journal of ours: nothing is locked through it
        lock = contextlib.nullcontext() if journal.is_symlink() else FileLock(str(journal / LOCK_NAME),
                                                                            f"the journal of {target}")
        with lock:
            unchanged = _same_tree(target, staging)
            backup = _free_name(target, "old" if unchanged else "before-rebuild")
            os.replace(target, backup)
        os.replace(staging, target)
    except LockedError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise FileExistsError(str(exc)) from None
    except BaseException:
        if backup is not None and backup.exists() and not os.path.lexists(target):
            os.replace(backup, target)  # the new demo could not take its place: the old one goes back
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if unchanged:
        shutil.rmtree(backup, ignore_errors=True)  # byte for byte the demo just written: nothing is lost
        return target, None
    return target, backup


def _write_demo(folder: Path, seed: int) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    names = [str(n) for n in digits.target_names]
    per_class = [np.flatnonzero(digits.target == c) for c in range(len(names))]
    n_train_max = min(len(ix) for ix in per_class) - DEMO_TEST_PER_CLASS
    train_counts = long_tail_counts(n_train_max, len(names), DEMO_IMBALANCE)
    for c, name in enumerate(names):
        order = rng.permutation(per_class[c])
        test_ix, train_ix = order[:DEMO_TEST_PER_CLASS], order[DEMO_TEST_PER_CLASS:DEMO_TEST_PER_CLASS + train_counts[c]]
        for split, indices in (("train", train_ix), ("test", test_ix)):
            sub = folder / split / name
            sub.mkdir(parents=True, exist_ok=True)
            for i in indices:
                _to_png(digits.images[i], DEMO_IMAGE_SIZE).save(sub / f"digit_{i:04d}.png")
    (folder / _MARKER).write_text("built by BalanceLab from sklearn.datasets.load_digits\n")


def _tree(root: Path) -> dict[str, str] | None:
    """Every entry under ``root`` by relative path (folders end in /), or None when it holds
    anything but folders and regular files (a link, a pipe): that is a change worth keeping."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                return None
            found[os.path.relpath(path, root) + ("/" if stat.S_ISDIR(mode) else "")] = path
    return found


def _same_tree(old: Path, new: Path) -> bool:
    """Whether ``old`` holds exactly ``new``'s folders and files, byte for byte."""
    a, b = _tree(old), _tree(new)
    if a is not None:  # the journal's folder and lock alone are no curation (opening the demo makes them)
        for key in (f"{JOURNAL_DIR}/{LOCK_NAME}", f"{JOURNAL_DIR}/"):
            a.pop(key, None)
    if a is None or b is None or a.keys() != b.keys():
        return False
    return all(k.endswith("/") or filecmp.cmp(a[k], b[k], shallow=False) for k in a)


def _free_name(target: Path, what: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10000):
        candidate = target.with_name(f"{target.name}.{what}-{stamp}" + (f"-{n}" if n > 1 else ""))
        if not os.path.lexists(candidate):
            return candidate
    raise FileExistsError(f"no free name beside {target} to keep the previous demo under")


