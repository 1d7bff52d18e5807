"""The embedded demo: a long-tailed ImageFolder built from scikit-learn's real digits data.

Every install has scikit-learn, so the app can open on a useful, genuinely imbalanced
dataset in its first minute without any download.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from balancelab.engine.core.paths import demo_dataset_dir

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
    """Write the demo to ``target`` (default: the user's data directory) and return its path.

    Layout: ``train/<digit>/`` long-tailed (ratio 15:1), ``test/<digit>/`` balanced.
    Writing happens in a temporary folder renamed into place, so an interrupted build
    never leaves a half-written demo behind.
    """
    from sklearn.datasets import load_digits

    target = Path(target) if target is not None else demo_dataset_dir()
    if (target / _MARKER).exists() and not force:
        return target
    if target.exists() and any(target.iterdir()) and not (target / _MARKER).exists():
        raise FileExistsError(f"{target} exists and is not a BalanceLab demo dataset; choose an empty folder")
    digits = load_digits()
    rng = np.random.default_rng(seed)
    names = [str(n) for n in digits.target_names]
    per_class = [np.flatnonzero(digits.target == c) for c in range(len(names))]
    n_train_max = min(len(ix) for ix in per_class) - DEMO_TEST_PER_CLASS
    train_counts = long_tail_counts(n_train_max, len(names), DEMO_IMBALANCE)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-", dir=target.parent))
    for c, name in enumerate(names):
        order = rng.permutation(per_class[c])
        test_ix, train_ix = order[:DEMO_TEST_PER_CLASS], order[DEMO_TEST_PER_CLASS:DEMO_TEST_PER_CLASS + train_counts[c]]
        for split, indices in (("train", train_ix), ("test", test_ix)):
            folder = staging / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in indices:
                _to_png(digits.images[i], DEMO_IMAGE_SIZE).save(folder / f"digit_{i:04d}.png")
    (staging / _MARKER).write_text("built by BalanceLab from sklearn.datasets.load_digits\n")
    if target.exists():
        backup = target.with_name(target.name + ".old")
        os.replace(target, backup)
        os.replace(staging, target)
        import shutil
        shutil.rmtree(backup, ignore_errors=True)  # only ever our own previous demo (marker checked above)
    else:
        os.replace(staging, target)
    return target
