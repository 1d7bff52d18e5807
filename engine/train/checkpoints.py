"""Checkpoints: dicts of state_dicts plus plain-data metadata, written atomically, loaded safely.

Writing goes to a temporary file in the same folder, is fsynced, then ``os.replace``d,
so a crash at any moment leaves either the previous or the new complete file.
Loading uses ``weights_only=True``: a checkpoint can never execute code.
"""
from __future__ import annotations

import os
import pickle

import torch

from balancelab.engine.core.atomic import atomic_file

REQUIRED_KEYS = ("model", "model_name", "classes", "in_channels", "image_size")


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message says why."""


def save_checkpoint(state: dict, path: str) -> None:
    with atomic_file(path, "wb", suffix=".pt") as fh:
        torch.save(state, fh)


def load_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint is empty (zero bytes): {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        raise CheckpointError(f"refusing to load {path}: it is not a plain weights file ({first})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {first}") from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise CheckpointError(f"{path} is not a BalanceLab checkpoint (missing keys)")
    return state
