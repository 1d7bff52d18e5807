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


def cache_dir() -> Path:
    """Decoded-image caches: safe to delete, rebuilt on demand."""
    return data_home() / "cache"


def usable_cache_dir(preferred: str | None = None) -> tuple[str | None, str | None]:
    """(folder, warning): ``preferred`` (default :func:`cache_dir`) when it can be created and
    written, else a private folder under the temporary directory, else None (keep caches in
    memory). A cache must never be the reason training fails, e.g. with a read-only home."""
    folder = str(preferred or cache_dir())
    problem = _writable_folder_problem(folder)
    if problem is None:
        return folder, None
    fallback = _private_temp_cache()
    where = f"using {fallback}" if fallback else "keeping decoded images in memory only"
    return fallback, f"cache folder {folder} is not usable ({problem}); {where}"


def _writable_folder_problem(folder: str) -> str | None:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        return exc.strerror or str(exc)
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        return "not writable"
    return None


def _private_temp_cache() -> str | None:
    """``<tmp>/balancelab-cache-<uid>``, only if it is our own private folder (not a link or
    another user's folder planted in a shared /tmp), else a fresh private one."""
    import stat
    import tempfile

    uid = os.getuid() if hasattr(os, "getuid") else None
    folder = os.path.join(tempfile.gettempdir(), f"balancelab-cache-{uid if uid is not None else 'user'}")
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(folder)
        private = stat.S_ISDIR(st.st_mode) and (uid is None or (st.st_uid == uid and not st.st_mode & 0o077))
        if private and _writable_folder_problem(folder) is None:
            return folder
        return tempfile.mkdtemp(prefix="balancelab-cache-")
    except OSError:
        return None


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
