"""The typed training configuration, saved as ``config.json`` in every run folder.

A run can be reproduced from its folder: every knob, the seed included, is here.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

from balancelab.engine.data.splits import VAL_FRACTION
from balancelab.engine.train.augment import AUGMENTATIONS
from balancelab.engine.train.models import CACHED_WEIGHTS, model_spec
from balancelab.engine.train.strategies import COMPONENTS, parse_strategy
from balancelab.engine.core.metrics import HEADLINE
from balancelab.engine.core.untrusted import is_finite_number

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "step", "cosine", "plateau")  # plateau: ReduceLROnPlateau on the validation loss, per epoch
SELECT_METRICS = (*HEADLINE, "val_loss")  # on the validation split; val_loss is the one lower-is-better
FINETUNE = ("all", "head")


class ConfigError(ValueError):
    """A configuration that cannot be trained; the message says what to change, ``setting`` which
    setting it is about when it is one (a caller may say where that setting came from)."""

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


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
    ema_decay: float = 0.0  # keep an exponential moving average of the weights (e.g. 0.999); 0 = off
    seed: int = 0
    split_seed: int = -1  # seed of the train/val hold-out; -1 = seed (fix it to compare on identical splits)
    device: str = "auto"
    image_size: int = 0  # 0 = the model's default
    pretrained: str | None = None  # path, or "imagenet" for torchvision's cache
    finetune: str = "all"  # "all" or "head"
    augment: str = "light"
    deskew: bool = False  # straighten each image's slant inside the model (handwriting, digits, symbols)
    val_fraction: float = VAL_FRACTION
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
    bagging_members: int = 2  # balanced-bagging: networks trained and averaged
    bagging_fraction: float = 0.0  # balanced-bagging: cap of each class per member, as a share of the largest; 0 = 1/k
    # classifier re-training (strategies crt, crt-smote, ...) and Remix (strategy remix)
    retrain_epochs: int = 10  # epochs over the balanced features; only the last linear layer trains
    retrain_lr: float = 1e-3
    remix_kappa: float = 3.0  # Remix: the label goes to the rarer image when its class is kappa times rarer ...
    remix_tau: float = 0.5  # ... and it covers at least 1 - tau of the mix
    plateau_patience: int = 2  # plateau schedule: epochs without a lower validation loss before the lr is cut
    plateau_factor: float = 0.1  # plateau schedule: the lr is multiplied by this at each cut

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

    def check_pretrained_file(self) -> None:
        """The pretrained weights file a new run starts from must be there (a named cache is
        looked up when the model is built)."""
        if self.pretrained and self.pretrained not in CACHED_WEIGHTS and not os.path.isfile(self.pretrained):
            what = "is not a regular file" if os.path.exists(self.pretrained) else "not found"
            raise ConfigError(f"pretrained weights file {what}: {self.pretrained}")

    def validate(self) -> None:
        """Refuse a configuration that cannot train, with one sentence naming the setting.

        The one place training settings are judged: the CLI, the GUI and ``train`` call it, and a
        config.json read back from disk is untrusted, so types are checked as well as ranges.
        """
        for name in STRING_FIELDS:
            value = getattr(self, name)
            if name == "pretrained" and value is None:
                continue
            if not isinstance(value, str):
                raise ConfigError(f"{setting_words(name)} must be text (got {value!r})")
            if "\0" in value:
                raise ConfigError(f"{setting_words(name)} contains a NUL byte")
        for name in BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{setting_words(name)} must be true or false (got {getattr(self, name)!r})")
        if not isinstance(self.extra, dict):
            raise ConfigError("extra must be a mapping")
        for name, (low, high) in INT_RANGES.items():
            _check_int(name, getattr(self, name), low, high)
        for name, rule in FLOAT_RANGES.items():
            _check_float(name, getattr(self, name), *rule)
        for name, choices in SETTING_CHOICES.items():
            if getattr(self, name) not in choices:
                raise ConfigError(f"unknown {setting_words(name)} {getattr(self, name)!r}; choose one of: {', '.join(choices)}")
        try:
            spec = model_spec(self.model)
            plan = parse_strategy(self.strategy)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        size = self.resolved_image_size()
        if size < spec.min_size:
            raise ConfigError(f"{spec.name} needs images of at least {spec.min_size} px (got {self.image_size})")
        _check_sampling_strategy(self.sampling_strategy, plan.sampler)
        from balancelab.engine.train.device import check_device  # device.py imports ConfigError from here

        check_device(self.device)
        if self.finetune == "head" and not self.pretrained:
            raise ConfigError("training the head only needs pretrained weights (--pretrained, or Pretrained in the app)")
        if self.pretrained and not spec.torchvision:
            raise ConfigError(f"{spec.name} is trained from scratch; pretrained weights (--pretrained) apply to torchvision models only")
        if not self.resume:  # a resumed run's weights are in its last.pt: the file may be gone by now
            self.check_pretrained_file()
        if not os.path.isdir(self.data):
            problem = "is not a folder" if os.path.exists(self.data) else "does not exist"
            raise ConfigError(f"dataset folder {problem}: {self.data}", setting="data")
        if os.path.exists(self.out) and not os.path.isdir(self.out):
            raise ConfigError(f"run folder is not a folder: {self.out}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """A config read back (untrusted): unknown keys ignored, a missing data or out left empty
        for ``validate`` to refuse; the values' types are judged there too."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{"data": "", "out": "", **{k: v for k, v in data.items() if k in known}})

    def save(self, path: str) -> None:
        from balancelab.engine.core.atomic import write_json_atomic

        write_json_atomic(path, self.to_dict())


def _fields_typed(*types: str) -> tuple[str, ...]:
    """TrainConfig's settings whose annotation is one of ``types`` (the module's annotations are text)."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.type in types)


STRING_FIELDS = _fields_typed("str", "str | None")
BOOL_FIELDS = _fields_typed("bool")
INT_RANGES = {  # name: (lowest, highest or None)
    "epochs": (1, 100_000), "batch_size": (1, 1 << 20), "warmup_epochs": (0, None), "step_size": (1, None),
    "seed": (0, 2**32 - 1), "split_seed": (-1, 2**32 - 1), "image_size": (0, 4096), "early_stopping": (0, None),
    "drw_epoch": (-1, None), "workers": (0, 256),
    "bagging_members": (1, 64),
    "retrain_epochs": (1, 10_000),
    "plateau_patience": (0, None),
}
FLOAT_RANGES = {  # name: (low, low included, high or None, high included)
    "lr": (0.0, False, None, False), "weight_decay": (0.0, True, None, False), "momentum": (0.0, True, 1.0, False),
    "step_gamma": (0.0, False, 1.0, True), "label_smoothing": (0.0, True, 1.0, False),
    "ema_decay": (0.0, True, 1.0, False),
    "val_fraction": (0.0, False, 0.9, False), "beta": (0.0, True, 1.0, False), "focal_gamma": (0.0, True, None, False),
    "mixup_alpha": (0.0, False, None, False), "cutmix_alpha": (0.0, False, None, False),
    "bagging_fraction": (0.0, True, 1.0, True),
    "retrain_lr": (0.0, False, None, False), "remix_kappa": (1.0, True, None, False), "remix_tau": (0.0, True, 1.0, True),
    "plateau_factor": (0.0, False, 1.0, False),
}
WORDS = {"lr": "learning rate", "schedule": "learning-rate schedule", "ema_decay": "EMA decay", "val_fraction": "validation fraction", "drw_epoch": "drw start epoch",
         "early_stopping": "early-stopping patience", "workers": "decode workers", "augment": "augmentation",
         "select_metric": "selection metric", "data": "dataset folder", "out": "run folder",
         "pretrained": "pretrained weights", "bagging_members": "bagging members (k)",
         "bagging_fraction": "bagging fraction", "retrain_epochs": "re-training epochs",
         "retrain_lr": "re-training learning rate", "remix_kappa": "Remix kappa", "remix_tau": "Remix tau"}


#: what each setting does: the one text the CLI's ``train --help`` and the GUI's tooltips show
SETTING_HELP = {
    "data": "dataset folder",
    "out": "run folder to write",
    "model": "model name (see 'models')",
    "strategy": "imbalance strategy, '+' to combine (see 'strategies')",
    "epochs": "training epochs",
    "batch_size": "images per batch",
    "lr": "learning rate",
    "optimizer": "optimizer",
    "weight_decay": "L2 weight decay",
    "momentum": "SGD momentum",
    "schedule": "learning-rate schedule: step cuts it every few epochs, cosine decays it smoothly, plateau cuts it "
                "when the validation loss stops falling (ReduceLROnPlateau, per epoch)",
    "warmup_epochs": "linear warm-up epochs",
    "step_size": "epochs between decays (step schedule)",
    "step_gamma": "decay factor (step schedule)",
    "label_smoothing": "label smoothing",
    "ema_decay": "keep an exponential moving average of the weights with this decay per step and evaluate, "
                 "select and save it (e.g. 0.999; 0 = off)",
    "seed": "training seed",
    "split_seed": "seed of the train/val hold-out (-1 = the training seed)",
    "device": "where to train",
    "image_size": "0 = the model's default",
    "pretrained": "weights file, or 'imagenet' for torchvision's local cache",
    "finetune": "with pretrained weights: train all layers or the head only",
    "augment": "training augmentation",
    "deskew": "straighten each image's slant (read off its second moments) inside the model, in training, "
              "evaluation, Review and export alike: for handwriting, digits and symbols, where a rare class's few "
              "images hold few of the slants its test images have",
    "val_fraction": "held out from train when there is no val/",
    "group_near_duplicates": "keep near-duplicate images (perceptual hash) on one side of the train/val hold-out; "
                             "identical images always are",
    "select_metric": "picks the best checkpoint (validation split)",
    "early_stopping": "patience in epochs, 0 = off",
    "sampling_strategy": "imbalanced-learn sampling_strategy for oversample/undersample: a ratio in (0, 1] or a name",
    "beta": "effective-number / drw beta",
    "focal_gamma": "focal loss gamma",
    "drw_epoch": "epoch where drw starts re-weighting (-1 = 2/3 of the epochs)",
    "mixup_alpha": "MixUp Beta(alpha, alpha)",
    "cutmix_alpha": "CutMix Beta(alpha, alpha)",
    "amp": "mixed precision on CUDA",
    "channels_last": "NHWC memory format on CUDA (faster convolutions on tensor cores)",
    "compile": "torch.compile the model (long GPU runs)",
    "workers": "image decode processes (0 = auto)",
    "resume": "continue from RUN_DIR/last.pt when it exists, else start the run there (so one command both starts "
              "a job and restarts it after a kill); the other settings must be the run's own: only the epochs, "
              "early stopping, the dataset's location, the device and speed options may change",
    "bagging_members": "balanced-bagging: networks trained, each on its own under-sample of the large classes, "
                       "and averaged (k)",
    "bagging_fraction": "balanced-bagging: each member keeps at most this share of the largest class per class "
                        "(0 = 1/k: disjoint slices); smaller classes are kept whole",
    "retrain_epochs": "crt strategies: epochs of training only the last layer again, on balanced features",
    "retrain_lr": "crt strategies: learning rate when only the last layer is trained again",
    "remix_kappa": "remix: class-count ratio from which the rarer image takes the label",
    "remix_tau": "remix: the rarer image takes the label when it covers more than 1 - tau of the mix",
    "plateau_patience": "plateau schedule: epochs without a lower validation loss before the learning rate is cut",
    "plateau_factor": "plateau schedule: the learning rate is multiplied by this at each cut",
}
#: the settings with a closed set of values, and those values
SETTING_CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "augment": tuple(AUGMENTATIONS),
                   "select_metric": SELECT_METRICS, "finetune": FINETUNE}


def setting_words(name: str) -> str:
    """How messages name a setting (``lr`` -> "learning rate")."""
    return WORDS.get(name, name.replace("_", " "))


def _check_int(name: str, value: object, low: int, high: int | None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{setting_words(name)} must be a whole number (got {value!r})")
    if value < low or (high is not None and value > high):
        upper = f" and at most {high}" if high is not None else ""
        raise ConfigError(f"{setting_words(name)} must be at least {low}{upper} (got {value})")


def _check_float(name: str, value: object, low: float, low_in: bool, high: float | None, high_in: bool) -> None:
    if high is None:
        rule = f"{'>=' if low_in else '>'} {low:g}"
    else:
        rule = f"in {'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
    number = is_finite_number(value)  # a config.json read back may hold a 400-digit integer
    ok = number and (value >= low if low_in else value > low)
    if ok and high is not None:
        ok = value <= high if high_in else value < high
    if not ok:
        raise ConfigError(f"{setting_words(name)} must be a finite number {rule} (got {value!r})")


def _check_sampling_strategy(value: str, sampler: str | None) -> None:
    """imbalanced-learn's sampling_strategy: auto, a ratio in (0, 1], or a name the sampler knows."""
    known = {c.name: c.sampling_names for c in COMPONENTS.values() if c.sampling_names}  # from the registry
    names = known.get(sampler or "") or tuple(dict.fromkeys(sum(known.values(), ())))
    if value in names:
        return
    try:
        ratio = float(value)
    except ValueError:
        ratio = math.nan
    if not (math.isfinite(ratio) and 0.0 < ratio <= 1.0):
        raise ConfigError(f"sampling strategy must be a ratio in (0, 1] or one of: {', '.join(names)} (got {value!r})")
