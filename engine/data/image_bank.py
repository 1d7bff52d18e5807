"""Decoded images of one split held as uint8 (in memory or memory-mapped), handed out as normalised float batches on a device."""
from __future__ import annotations

import os
import numpy as np
import torch
from balancelab.engine.data.splits import SampleList
from balancelab.engine.core.events import EventStream, Finished, forward, StopToken
from balancelab.engine.data.decode_cache import decode_images


class ImageBank:
    """Cached images of one split plus labels; hands out normalised float batches on a device."""

    def __init__(self, array: np.ndarray, labels: np.ndarray, paths: list[str]) -> None:
        self.in_memory = not isinstance(array, np.memmap)
        self.array = array
        self.tensor = torch.from_numpy(np.ascontiguousarray(array)) if self.in_memory else None
        self.labels = np.asarray(labels, dtype=np.int64)
        self.labels_t = torch.from_numpy(self.labels)
        self.paths = paths

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: np.ndarray, device: torch.device, channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if self.in_memory:
            t = self.tensor[torch.from_numpy(idx)]
        else:
            t = torch.from_numpy(np.asarray(self.array[np.sort(idx)]))
            idx = np.sort(idx)
        y = self.labels_t[torch.from_numpy(idx)]
        if device.type == "cuda":  # page-locked staging makes the copy asynchronous
            t, y = t.pin_memory(), y.pin_memory()
        x = t.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt), y.to(device, non_blocking=True)


def channel_stats(array: np.ndarray, limit: int = 5000) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of (a sample of) the training images, for from-scratch models."""
    sample = np.asarray(array[: min(len(array), limit)], dtype=np.float32) / 255.0
    if sample.size == 0:
        return (0.5,), (0.25,)
    mean = sample.mean(axis=(0, 1, 2))
    std = np.maximum(sample.std(axis=(0, 1, 2)), 1e-3)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def decode_split(root: str, samples: SampleList, channels: int, size: int, stop: StopToken, workers: int,
                 phase: str, skipped: list) -> EventStream[ImageBank | None]:
    """Progress events, then Finished(ImageBank) (files that cannot be decoded are left out and
    appended to ``skipped``), or Finished(None, stopped=True)."""
    paths = [os.path.join(root, p) for p in samples.paths]
    decoded = yield from forward(decode_images(paths, channels, size, stop=stop, workers=workers or None, phase=phase))
    if decoded is None:
        yield Finished(None, stopped=True)
        return
    for abs_path, reason in decoded.failures:
        skipped.append((os.path.relpath(abs_path, root).replace(os.sep, "/"), reason))
    keep = np.flatnonzero(decoded.ok)
    array = decoded.array if len(keep) == len(samples) else decoded.array[keep]
    yield Finished(ImageBank(array, samples.labels[keep], [samples.paths[i] for i in keep]))
