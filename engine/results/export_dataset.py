"""Export the balanced training set of a run (epoch 1 as the sampler drew it) as an ImageFolder.

Only new files are created: each output is a hard link to the original made under a fresh name
(``os.link`` never replaces) or an ``O_EXCL`` copy, so an export can never write into a dataset
image, even when two sources share a basename. Outputs keep their sub-path inside the class
folder (``0/batch1/img001.png``); every path from split.json is confined to the dataset root,
every output to the export folder. A failed export removes what it created, and only that.
"""
from __future__ import annotations

import errno
import os
import shutil

import numpy as np

from balancelab.engine.core.events import EventStream, Finished, Progress, StopToken
from balancelab.engine.core.safe_paths import UnsafePathError, confined, is_regular_file, lies_inside
from balancelab.engine.results.new_files import create_exclusive, write_error, write_new_file
from balancelab.engine.train.run_folder import RunError, read_config, read_split
from balancelab.engine.train.strategies import epoch_indices, parse_strategy

SPLIT_FOLDERS = ("train", "val", "test")


def prepare_empty_folder(out_dir: str) -> bool:
    """Make sure ``out_dir`` is a new or empty real folder; True when this call created it."""
    if os.path.islink(out_dir) or (os.path.lexists(out_dir) and not os.path.isdir(out_dir)):
        raise RunError(f"{out_dir} is not a folder; choose a new or empty folder")
    if os.path.isdir(out_dir):
        if os.listdir(out_dir):
            raise RunError(f"{out_dir} is not empty; choose a new or empty folder")
        return False
    try:
        os.makedirs(out_dir)
    except OSError as exc:
        raise write_error(out_dir, exc) from None
    return True


def _inside_class(rel: str, label: str) -> list[str]:
    """The part of a dataset path below its class folder (``train/0/a/x.png`` -> ``a/x.png``)."""
    parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
    if len(parts) > 2 and parts[0] in SPLIT_FOLDERS and parts[1] == label:
        return parts[2:]
    if len(parts) > 1 and parts[0] == label:
        return parts[1:]
    return parts[-1:]


class _Writer:
    """Creates the export's files and folders, remembers them, and can take them all back."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.files: list[str] = []
        self.dirs: list[str] = []
        self.taken: set[str] = set()
        self.modes: set[str] = set()

    def add(self, src: str, label: str, sub: list[str], repeat: int) -> str:
        stem, ext = os.path.splitext(sub[-1])
        stem = stem if repeat == 1 else f"{stem}__rep{repeat}"
        for n in range(1, 100000):
            name = stem + ext if n == 1 else f"{stem}__{n}{ext}"
            rel = "/".join([label, *sub[:-1], name])
            if rel.lower() in self.taken:
                continue
            dst = confined(self.out_dir, rel)
            self._make_parents(dst)
            try:
                self._create(src, dst)
            except FileExistsError:
                continue
            self.taken.add(rel.lower())
            self.files.append(dst)
            return rel
        raise RunError(f"no free output name for {src}")

    def _make_parents(self, dst: str) -> None:
        missing = []
        folder = os.path.dirname(dst)
        while not os.path.isdir(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        for folder in reversed(missing):
            os.mkdir(folder)
            self.dirs.append(folder)

    def _create(self, src: str, dst: str) -> None:
        try:
            os.link(src, dst)  # src is checked not to be a symlink
            self.modes.add("link")
            return
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EACCES):
                raise
        with open(src, "rb") as fin:
            fout = create_exclusive(dst)  # FileExistsError when taken: never written through
            try:
                with fout:
                    shutil.copyfileobj(fin, fout)
            except BaseException:
                os.unlink(dst)
                raise
        shutil.copystat(src, dst, follow_symlinks=False)
        self.modes.add("copy")

    def discard(self, created_root: bool) -> None:
        """Remove what this export wrote, and its folder when the export made it and it is empty now."""
        self.undo()
        if created_root and not os.listdir(self.out_dir):
            os.rmdir(self.out_dir)

    def undo(self) -> None:
        for path in reversed(self.files):
            try:
                os.unlink(path)  # our own new name; the original keeps its data
            except OSError:
                pass
        for folder in reversed(self.dirs):
            try:
                os.rmdir(folder)
            except OSError:
                pass


#: Files linked or copied between two progress events (and stop checks) of a dataset export.
PROGRESS_EVERY = 256


def export_balanced_dataset(run_dir: str, data_root: str, out_dir: str,
                            stop: StopToken | None = None) -> EventStream[dict]:
    """Write the training images of epoch 1 as the sampler drew them, as an ImageFolder.

    An image drawn k times appears k times (``name__rep2.png`` ...). Loss re-weighting is not a
    property of the data and is not reflected; ``manifest.csv`` maps every written file to its
    source. Hard links share the original's data: never edit an exported image in place. Yields
    Progress every few hundred files; a stop removes what it wrote and ends with Finished(None).
    """
    config, split = read_config(run_dir), read_split(run_dir)
    out_dir = os.path.abspath(out_dir)
    if not os.path.isdir(data_root):
        raise RunError(f"dataset folder does not exist: {data_root}")
    if lies_inside(out_dir, data_root):  # the dataset is the user's
        raise RunError(f"{out_dir} is inside the dataset; export the balanced copy to a folder outside it")
    classes, train = split["classes"], split["train"]
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[label] for _, label in train], dtype=np.int64)
    plan = parse_strategy(config.get("strategy", "none"))
    idx = epoch_indices(plan, labels, 0, int(config.get("seed", 0)), config.get("sampling_strategy"))
    sources = []
    for rel, _ in train:  # all checked before anything is written
        try:
            sources.append(confined(data_root, rel))
        except UnsafePathError as exc:
            raise RunError(f"split.json of {run_dir} is refused: {exc}") from None
    created_root = prepare_empty_folder(out_dir)
    writer = _Writer(out_dir)
    seen: dict[int, int] = {}
    rows, missing = [], set()
    stopped = False
    try:
        for n, i in enumerate(map(int, idx)):
            if n % PROGRESS_EVERY == 0:
                if stop is not None and stop.requested:
                    stopped = True
                    break
                yield Progress("exporting the balanced dataset", n, len(idx))
            rel, label = train[i]
            seen[i] = seen.get(i, 0) + 1
            src = sources[i]
            if os.path.islink(src) or not is_regular_file(src):
                missing.add(rel)
                continue
            rows.append((writer.add(src, label, _inside_class(rel, label), seen[i]), rel))
        if not stopped:
            write_new_file(os.path.join(out_dir, "manifest.csv"), _csv(["file", "source"], rows))
    except BaseException as exc:
        writer.discard(created_root)
        if isinstance(exc, OSError):
            raise write_error(out_dir, exc) from None
        if isinstance(exc, UnsafePathError):
            raise RunError(str(exc)) from None
        raise
    if stopped:  # nothing half made is left behind
        writer.discard(created_root)
        yield Finished(None, stopped=True)
        return
    yield Progress("exporting the balanced dataset", len(idx), len(idx))
    counts = {c: 0 for c in classes}
    for dst_rel, _ in rows:
        counts[dst_rel.split("/")[0]] += 1
    warnings = [f"{len(missing)} of the run's {len(train)} training images are no longer in {data_root} (moved, "
                f"relabelled or deleted since, e.g. {sorted(missing)[0]}): the export holds the others"] if missing else []
    recorded = config.get("data")
    if isinstance(recorded, str) and recorded and os.path.realpath(recorded) != os.path.realpath(data_root):
        warnings.append(f"the run was trained on {recorded[:200]}, not {data_root}: the files exported are those of "
                        "the same names there")
    yield Finished({"path": out_dir, "files": len(rows), "class_counts": counts,
                    "method": "+".join(sorted(writer.modes)) or "none", "warnings": warnings})


def _csv(header: list[str], rows: list) -> bytes:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8", "surrogateescape")  # a file name that is not UTF-8: its own bytes
