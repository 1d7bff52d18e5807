"""Which torch device a run uses: auto picks CUDA, then Apple MPS, then the CPU.

``check_device`` is the one place a device name is judged: TrainConfig.validate, the CLI's
``--device`` of evaluate/predict and ``resolve_device`` all call it, so they refuse the same names
with the same sentence. torch accepts device types it cannot train on (``meta`` has no data,
``xpu``/``hpu``... are not supported here), so a name that parses is not enough.
"""
from __future__ import annotations

import torch
from balancelab.engine.train.config import ConfigError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
TRAINABLE_TYPES = ("cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def check_device(name: object) -> None:
    """Raise ConfigError unless ``name`` is auto or a device this machine can train on."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"device must be one of {DEVICE_CHOICES} (got {name!r})")
    text = name.strip().lower()
    if text == "auto":
        return
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {name!r}; use {DEVICE_CHOICES}") from None
    if device.type not in TRAINABLE_TYPES:
        raise ConfigError(f"device {name!r} cannot train or run models; use {DEVICE_CHOICES}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("CUDA was requested but no CUDA GPU is available; use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"there is no GPU {device.index}: this machine has {count} (cuda:0 to cuda:{count - 1})")
    elif device.type == "mps" and not _mps_available():
        raise ConfigError("Apple MPS was requested but is not available; use --device cpu")
    elif device.index not in (None, 0):
        raise ConfigError(f"unknown device {name!r}; use {DEVICE_CHOICES}")


def resolve_device(name: str | None) -> torch.device:
    name = "auto" if name is None else name
    check_device(name)
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def describe_device() -> tuple[list[str], str]:
    options = ["auto", "cpu"]
    if torch.cuda.is_available():
        options += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        found = f"GPU found: {torch.cuda.get_device_name(0)}"
    elif _mps_available():
        options.append("mps")
        found = "Apple GPU (MPS) found"
    else:
        found = "no GPU found: training runs on the CPU"
    return options, found
