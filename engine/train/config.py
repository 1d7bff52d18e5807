"""The typed training configuration, saved as ``config.json`` in every run folder.

A run can be reproduced from its folder: every knob, the seed included, is here.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

from balancelab.engine.train.augment import AUGMENTATIONS
from balancelab.engine.train.models import model_spec
from balancelab.engine.train.strategies import parse_strategy

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "step", "cosine")
SELECT_METRICS = ("balanced_accuracy", "macro_f1", "accuracy", "geometric_mean", "val_loss")


class ConfigError(ValueError):
    """A configuration that cannot be trained; the message says what to change."""


@dataclass
class TrainConfig:
    data: str
    out: str
    model: str = "mnist-classic"
    strategy: str = "none"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_epochs: int = 0
    step_size: int = 10
    step_gamma: float = 0.1
    label_smoothing: float = 0.0
    seed: int = 0
    split_seed: int = -1  # seed of the train/val hold-out; -1 = seed (fix it to compare on identical splits)
    device: str = "auto"
    image_size: int = 0  # 0 = the model's default
    pretrained: str | None = None  # path, or "imagenet" for torchvision's cache
    finetune: str = "all"  # "all" or "head"
    augment: str = "light"
    val_fraction: float = 0.15
    group_near_duplicates: bool = False  # also keep near-duplicate (not only identical) images on one side of the hold-out
    select_metric: str = "balanced_accuracy"
    early_stopping: int = 0  # patience in epochs, 0 = off
    sampling_strategy: str = "auto"
    beta: float = 0.999
    focal_gamma: float = 2.0
    drw_epoch: int = -1  # -1 = two thirds of the epochs
    mixup_alpha: float = 0.2
    cutmix_alpha: float = 1.0
    amp: bool = True  # mixed precision on CUDA
    channels_last: bool = True  # NHWC memory format on CUDA (faster convolutions on tensor cores)
    compile: bool = False  # torch.compile the model (worth it for long GPU runs; slow to start)
    workers: int = 0  # decode processes, 0 = auto
    resume: bool = False
    extra: dict = field(default_factory=dict)

    def resolved_image_size(self) -> int:
        spec = model_spec(self.model)
        size = self.image_size or spec.default_size
        if spec.size_multiple > 1:
            size = max(spec.size_multiple, size - size % spec.size_multiple)
        return size

    def resolved_split_seed(self) -> int:
        return self.split_seed if self.split_seed >= 0 else self.seed

    def resolved_drw_epoch(self) -> int:
        return self.drw_epoch if self.drw_epoch >= 0 else max(1, (2 * self.epochs) // 3)

    def validate(self) -> None:
        try:
            model_spec(self.model)
            parse_strategy(self.strategy)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1 (got {self.epochs})"),
            (self.batch_size >= 1, f"batch size must be at least 1 (got {self.batch_size})"),
            (self.lr > 0, f"learning rate must be positive (got {self.lr})"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}"),
            (self.augment in AUGMENTATIONS, f"augmentation must be one of {', '.join(AUGMENTATIONS)}"),
            (0.0 < self.val_fraction < 0.9, "val_fraction must be between 0 and 0.9"),
            (self.select_metric in SELECT_METRICS, f"select_metric must be one of {', '.join(SELECT_METRICS)}"),
            (self.finetune in ("all", "head"), "finetune must be 'all' or 'head'"),
            (0.0 <= self.beta < 1.0, "beta must be in [0, 1)"),
            (self.focal_gamma >= 0, "focal gamma must be >= 0"),
            (0.0 <= self.label_smoothing < 1.0, "label smoothing must be in [0, 1)"),
            (self.image_size >= 0, "image size must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.finetune == "head" and not self.pretrained:
            raise ConfigError("training the head only needs pretrained weights (--pretrained)")
        if self.pretrained and self.pretrained not in ("imagenet", "default", "cache") and not os.path.isfile(self.pretrained):
            raise ConfigError(f"pretrained weights file not found: {self.pretrained}")
        if not os.path.isdir(self.data):
            raise ConfigError(f"dataset folder does not exist: {self.data}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: str) -> None:
        from balancelab.engine.core.atomic import write_json_atomic

        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str) -> "TrainConfig":
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))
