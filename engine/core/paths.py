"""Where BalanceLab keeps its own data: demo dataset, runs, caches.

``BALANCELAB_HOME`` overrides everything (tests point it at a temporary folder);
otherwise the XDG data directory is used.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

from balancelab.engine.core.atomic import write_text_atomic

RUN_MARKER = ".balancelab-run"
"""A file of this name marks a run folder: the dataset scanner skips such folders (a run written
inside a dataset is not a class) and the run-folder reader checks its ``state``."""
RUN_SCHEMA = 1


def mark_run_folder(folder: str | os.PathLike, state: str) -> None:
    """Write (atomically) the marker of a run folder with its state: reserved, running, incomplete, complete."""
    text = json.dumps({"format": "balancelab-run", "schema": RUN_SCHEMA, "state": state, "pid": os.getpid(),
                       "updated": time.time()})
    write_text_atomic(os.path.join(os.fspath(folder), RUN_MARKER), text)


def data_home() -> Path:
    override = os.environ.get("BALANCELAB_HOME")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "balancelab"


def demo_dataset_dir() -> Path:
    return data_home() / "demo-digits"


def runs_dir_for(dataset_root: str) -> Path:
    """Runs of one dataset live together so the app can list and compare them."""
    root = os.path.abspath(dataset_root)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(root.rstrip(os.sep)) or "dataset")[:40]
    digest = hashlib.sha1(root.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return data_home() / "runs" / f"{slug}-{digest}"


def new_run_dir(dataset_root: str, label: str) -> Path:
    """A fresh, reserved folder ``<timestamp>-<label>`` for a run of this dataset.

    Two runs started within the same second get ``-2``, ``-3``… instead of sharing a folder
    (the second would overwrite the first's checkpoints and metrics). The folder gets the run
    marker at once, so a scan never mistakes it for a class.
    """
    parent = runs_dir_for(dataset_root)
    parent.mkdir(parents=True, exist_ok=True)
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{re.sub(r'[^A-Za-z0-9._+-]+', '_', label)}"
    for n in range(1, 10000):
        folder = parent / (base if n == 1 else f"{base}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        mark_run_folder(folder, "reserved")
        return folder
    raise OSError(f"no free run folder name for {base} in {parent}")
