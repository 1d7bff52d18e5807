"""Find splits, classes and candidate files in an ImageFolder tree without decoding anything.

Handles the messy parts of real folders: split-name aliases, hidden and OS metadata
files, symlink loops, unreadable folders, files outside class folders.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from balancelab.engine.core.paths import RUN_MARKER
from balancelab.engine.data.imageio import OS_METADATA_NAMES

#: Folder names recognised as splits, mapped to their canonical split name.
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}
SPLIT_ORDER = ("train", "val", "test", "all")
#: Folders BalanceLab itself writes inside a dataset root (journal metadata, excluded files).
RESERVED_FOLDERS = frozenset({"_excluded", ".balancelab"})
# RUN_MARKER (core.paths): BalanceLab writes it into every run folder, so such a folder is output, never a class.


class LayoutError(Exception):
    """The root cannot be used as a dataset at all (missing, not a folder, no class folders)."""


@dataclass
class Problem:
    path: str  # relative to the dataset root, with forward slashes
    kind: str
    reason: str

    def to_dict(self) -> dict:
        return {"path": self.path, "kind": self.kind, "reason": self.reason}

    def describe(self) -> str:
        """"kind: reason", or the reason alone where it already starts with the kind's words
        ("truncated: no PNG IEND chunk", not "truncated: truncated: ...")."""
        words = self.kind.replace("-", " ").lower()
        same = self.reason.replace("-", " ").lower().startswith(words)
        return self.reason if same else f"{self.kind}: {self.reason}"


@dataclass
class FileCandidate:
    abs_path: str
    rel_path: str
    split: str
    label: str


@dataclass
class Layout:
    root: str
    kind: str  # "splits" or "flat"
    split_dirs: dict[str, str]  # canonical split -> folder name on disk
    classes: dict[str, list[str]]  # split -> sorted class names
    files: list[FileCandidate] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    ignored: list[Problem] = field(default_factory=list)


def rel(root: str, path: str) -> str:
    """Path relative to ``root`` with forward slashes (string slicing: relpath is slow on 100k files)."""
    prefix = root.rstrip(os.sep) + os.sep
    if path.startswith(prefix):
        tail = path[len(prefix):]
    else:
        tail = os.path.relpath(path, root)
    return tail.replace(os.sep, "/") if os.sep != "/" else tail


def _is_hidden_or_metadata(name: str) -> bool:
    return name.startswith(".") or name.lower() in OS_METADATA_NAMES


def _scandir(path: str, root: str, problems: list[Problem]) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except PermissionError:
        problems.append(Problem(rel(root, path), "unreadable", "cannot read folder: permission denied"))
    except OSError as exc:
        problems.append(Problem(rel(root, path), "unreadable", f"cannot read folder: {exc.strerror or exc}"))
    return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def _linked_folder_problem(path: str, root: str, class_real: str | None = None) -> str | None:
    """Why a symbolic link to a folder is not followed, or None. A link to a folder holding the
    dataset (``/``, the dataset itself) or this class would walk the dataset again, or the whole
    disk. Any other link is followed: images kept on another disk, or in a folder of the dataset
    the scan does not walk (a hidden store); a link to another class folder reads its images twice,
    and the duplicate check reports them."""
    target = os.path.realpath(path)
    root_real = os.path.realpath(root)
    for holder, what in ((class_real, "this class"), (root_real, "the dataset")):
        if holder and (holder == target or holder.startswith(target.rstrip(os.sep) + os.sep)):
            return f"symlink to a folder containing {what} skipped (loop)"
    return None


def _walk_class(folder: str, root: str, split: str, label: str, layout: Layout, on_files=None) -> None:
    """Collect files below one class folder, recursively, guarding against symlink loops."""
    seen: set[tuple[int, int]] = set()
    class_real = os.path.realpath(folder)
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            st = os.stat(current)
        except OSError as exc:
            layout.problems.append(Problem(rel(root, current), "unreadable", f"cannot read folder: {exc.strerror or exc}"))
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            layout.ignored.append(Problem(rel(root, current), "symlink-loop", "symlink loop skipped"))
            continue
        seen.add(key)
        subdirs = []
        entries = _scandir(current, root, layout.problems)
        if current != folder and any(e.name == RUN_MARKER for e in entries):
            layout.ignored.append(_run_folder(root, current))
            continue
        for entry in entries:
            if _is_hidden_or_metadata(entry.name):
                layout.ignored.append(Problem(rel(root, entry.path), "hidden", "hidden or OS metadata file ignored"))
                continue
            if _is_dir(entry):
                why = _linked_folder_problem(entry.path, root, class_real) if entry.is_symlink() else None
                if why:
                    layout.ignored.append(Problem(rel(root, entry.path), "symlink-loop", why))
                    continue
                subdirs.append(entry.path)
            elif entry.is_symlink() and not os.path.exists(entry.path):
                layout.problems.append(Problem(rel(root, entry.path), "broken-link", "broken symbolic link"))
            else:
                layout.files.append(FileCandidate(entry.path, rel(root, entry.path), split, label))
        stack.extend(reversed(subdirs))
        if on_files is not None:
            on_files(layout.files)


def _is_run_folder(path: str) -> bool:
    return os.path.lexists(os.path.join(path, RUN_MARKER))


def _run_folder(root: str, path: str) -> Problem:
    return Problem(rel(root, path), "balancelab-output", f"BalanceLab run folder (has {RUN_MARKER}) skipped")


def _own_folders(root: str, top: list[os.DirEntry]) -> dict[str, Problem]:
    """Folders in the dataset root that BalanceLab wrote (journal, excluded files, runs): never classes."""
    own = {}
    for entry in top:
        if entry.name in RESERVED_FOLDERS:
            own[entry.name] = Problem(entry.name, "balancelab-output",
                                      "BalanceLab's own folder (journal or excluded files) skipped")
        elif _is_dir(entry) and not _is_hidden_or_metadata(entry.name) and _is_run_folder(entry.path):
            own[entry.name] = _run_folder(root, entry.path)
    return own


def discover(root: str, on_files=None) -> Layout:
    """Describe the tree at ``root``; raise :class:`LayoutError` if it is not a dataset.

    ``on_files(files_so_far)`` is called after each folder is listed, so a caller can start
    verifying files while the rest of a large tree is still being listed.
    """
    if not isinstance(root, str) or not root.strip():  # abspath('') would quietly be the current folder
        raise LayoutError("no dataset folder given (the path is empty)")
    root = os.path.abspath(root)
    if not os.path.exists(root):
        raise LayoutError(f"dataset folder does not exist: {root}")
    if not os.path.isdir(root):
        raise LayoutError(f"not a folder: {root}")
    problems: list[Problem] = []
    top = _scandir(root, root, problems)
    if problems:
        raise LayoutError(f"cannot read dataset folder {root}: {problems[0].reason}")
    if any(e.name == RUN_MARKER for e in top):
        raise LayoutError(f"{root} is a BalanceLab run folder, not a dataset")
    own = _own_folders(root, top)
    layout_ignored = list(own.values())
    top_dirs = [e for e in top if _is_dir(e) and not _is_hidden_or_metadata(e.name) and e.name not in own]
    split_dirs = {}
    for entry in top_dirs:
        canonical = SPLIT_ALIASES.get(entry.name.lower())
        if canonical and canonical not in split_dirs:
            split_dirs[canonical] = entry.name
    layout = Layout(root=root, kind="splits" if split_dirs else "flat", split_dirs={}, classes={}, ignored=layout_ignored)
    if split_dirs:
        for entry in top_dirs:
            if entry.name not in split_dirs.values():
                layout.ignored.append(Problem(entry.name, "outside-splits", "folder next to the split folders ignored"))
        ordered = [s for s in SPLIT_ORDER if s in split_dirs]
        layout.split_dirs = {s: split_dirs[s] for s in ordered}
        containers = [(s, os.path.join(root, split_dirs[s])) for s in ordered]
    else:
        layout.split_dirs = {"all": "."}
        containers = [("all", root)]
    for split, container in containers:
        entries = top if container == root else _scandir(container, root, layout.problems)
        class_names = []
        for entry in entries:
            if container == root and entry.name in own:
                continue
            if _is_hidden_or_metadata(entry.name):
                if entry.name != ".git":
                    layout.ignored.append(Problem(rel(root, entry.path), "hidden", "hidden or OS metadata entry ignored"))
                continue
            if _is_dir(entry):
                if container != root and _is_run_folder(entry.path):
                    layout.ignored.append(_run_folder(root, entry.path))
                    continue
                why = _linked_folder_problem(entry.path, root) if entry.is_symlink() else None
                if why:  # a class folder that is a link to /, or back into the dataset
                    layout.ignored.append(Problem(rel(root, entry.path), "symlink-loop", why))
                    continue
                class_names.append(entry.name)
                _walk_class(entry.path, root, split, entry.name, layout, on_files)
            elif container == root:
                layout.ignored.append(Problem(rel(root, entry.path), "stray-file", "file next to the class folders ignored"))
            else:
                layout.problems.append(Problem(rel(root, entry.path), "stray-file", "file outside any class folder ignored"))
        layout.classes[split] = sorted(class_names)
    layout.problems.extend(problems)
    if not any(layout.classes.values()):
        raise LayoutError(f"no class folders found in {root} (expected one sub-folder per class, optionally inside train/val/test)")
    return layout
