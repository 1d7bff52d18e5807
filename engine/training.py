"""The training engine: a generator of typed events, shaped like torchvision's reference
classification scripts (separate ``train_one_epoch`` / ``evaluate``), with every imbalance
strategy, atomic checkpoints and a run folder that reproduces the run.

Usage (CLI, tests and GUI worker alike)::

    for event in train(config, stop_token):
        ...  # Progress, TrainStarted, BatchProgress, EpochEnd, CheckpointSaved, Finished/Failed
"""
from __future__ import annotations

import math
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .augment import make_augmentation, make_batch_mixer, strong_augmentation
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig
from .data_split import DataSplits, SampleList, SplitError, make_splits
from .distributed import DistContext, from_environment, shard
from .events import Failed, Finished, Progress, StopToken
from .losses import BalancedLoss
from .metrics import compute_metrics
from .models import ModelError, build_model, freeze_all_but_head
from .runs import write_csv_atomic, write_json_atomic
from .scanner import LayoutError, ScanResult, scan_steps
from .strategies import (StrategyError, class_weights_for_epoch, epoch_indices, expected_epoch_counts, log_prior,
                         minority_classes, parse_strategy)
from .tensor_cache import decode_images

HISTORY_FIELDS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_balanced_accuracy",
                  "val_macro_f1", "val_geometric_mean", "lr", "seconds", "images_per_second"]


# --- events -----------------------------------------------------------------------------------

@dataclass
class TrainStarted:
    run_dir: str
    device: str
    classes: list[str]
    train_counts: list[int]
    effective_counts: list[float]
    n_train: int
    n_val: int
    n_test: int
    epochs: int
    batches_per_epoch: int
    start_epoch: int = 0
    skipped: int = 0


@dataclass
class BatchProgress:
    epoch: int  # 1-based
    batch: int  # 1-based
    batches: int
    loss: float
    images_per_second: float
    eta_seconds: float


@dataclass
class EpochEnd:
    epoch: int  # 1-based
    entry: dict
    is_best: bool


@dataclass
class CheckpointSaved:
    path: str
    kind: str  # "best" or "last"
    epoch: int


@dataclass
class RunResult:
    run_dir: str
    metrics: dict
    stopped: bool = False
    completed_epochs: int = 0
    extra: dict = field(default_factory=dict)


# --- device and data --------------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}' (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CUDA was requested but no CUDA GPU is available; use --device cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("Apple MPS was requested but is not available; use --device cpu")
    return device


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


# --- one epoch and evaluation (torchvision reference shape) -----------------------------------

@dataclass
class EpochContext:
    model: torch.nn.Module
    bank: ImageBank
    loss_fn: BalancedLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    device: torch.device
    batch_size: int
    augment: object = None
    strong_augment: object = None
    minority_mask: torch.Tensor | None = None
    mixer: object = None
    scaler: object = None
    generator: torch.Generator | None = None
    channels_last: bool = False


def _has_batchnorm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def train_one_epoch(ctx: EpochContext, indices: np.ndarray, epoch: int, stop: StopToken) -> Iterator:
    """Yield BatchProgress per batch; return (mean loss, accuracy, images, seconds, stopped)."""
    model = ctx.model
    model.train()
    n_batches = math.ceil(len(indices) / ctx.batch_size)
    drop_single = _has_batchnorm(model)
    total_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    use_amp = ctx.scaler is not None
    for b in range(n_batches):
        if stop.requested:
            return total_loss / max(seen, 1), correct / max(seen, 1), seen, time.perf_counter() - start, True
        idx = indices[b * ctx.batch_size:(b + 1) * ctx.batch_size]
        if drop_single and len(idx) < 2:
            continue
        x, y = ctx.bank.batch(idx, ctx.device, ctx.channels_last)
        raw = x
        if ctx.augment is not None:
            x = ctx.augment(x, ctx.generator)
        if ctx.strong_augment is not None and ctx.minority_mask is not None:
            sel = ctx.minority_mask[y]
            if bool(sel.any()):  # minority images get the stronger preset instead of the base one
                x = x.clone() if x is raw else x
                x[sel] = ctx.strong_augment(raw[sel], ctx.generator)
        target = y
        if ctx.mixer is not None:
            x, target = ctx.mixer(x, y)
        with torch.autocast(device_type=ctx.device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(x)
            loss = ctx.loss_fn(logits, target)
        if stop.requested:  # asked during the forward pass: skip the backward pass and the update
            return total_loss / max(seen, 1), correct / max(seen, 1), seen, time.perf_counter() - start, True
        ctx.optimizer.zero_grad(set_to_none=True)
        if use_amp:
            ctx.scaler.scale(loss).backward()
            ctx.scaler.step(ctx.optimizer)
            ctx.scaler.update()
        else:
            loss.backward()
            ctx.optimizer.step()
        if ctx.scheduler is not None:
            ctx.scheduler.step()
        n = len(idx)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise FloatingPointError("the loss became NaN/inf: lower the learning rate")
        total_loss += loss_value * n
        correct += int((logits.detach().argmax(1) == y).sum())
        seen += n
        elapsed = time.perf_counter() - start
        rate = seen / elapsed if elapsed > 0 else 0.0
        remaining = (len(indices) - seen) / rate if rate > 0 else 0.0
        yield BatchProgress(epoch, b + 1, n_batches, loss_value, rate, remaining)
    return total_loss / max(seen, 1), correct / max(seen, 1), seen, time.perf_counter() - start, False


def evaluate(model: torch.nn.Module, bank: ImageBank, device: torch.device, batch_size: int = 256) -> tuple[np.ndarray, float]:
    """Class probabilities for every image of ``bank`` and the mean plain cross-entropy."""
    model.eval()
    probs, total_loss = [], 0.0
    with torch.inference_mode():
        for start in range(0, len(bank), batch_size):
            idx = np.arange(start, min(len(bank), start + batch_size))
            x, y = bank.batch(idx, device)
            logits = model(x).float()
            total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
            probs.append(torch.softmax(logits, dim=1).cpu().numpy())
    return (np.concatenate(probs) if probs else np.zeros((0, 0))), total_loss / max(len(bank), 1)


# --- the run ------------------------------------------------------------------------------------

def _make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at optimizer ``step``: linear warm-up, then step or cosine decay."""
    warm = cfg.warmup_epochs * steps_per_epoch
    if warm and step < warm:
        return (step + 1) / warm
    total = max(1, cfg.epochs * steps_per_epoch - warm)
    t = step - warm
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t / total)))
    if cfg.schedule == "step":
        return cfg.step_gamma ** ((step // steps_per_epoch) // max(1, cfg.step_size))
    return 1.0


def _decode_split(root: str, samples: SampleList, channels: int, size: int, stop: StopToken, workers: int,
                  phase: str, skipped: list) -> Iterator:
    paths = [os.path.join(root, p) for p in samples.paths]
    decoded = None
    for event in decode_images(paths, channels, size, stop=stop, workers=workers or None, phase=phase):
        if isinstance(event, Finished):
            decoded = event.result
        else:
            yield event
    if decoded is None:
        return None
    for abs_path, reason in decoded.failures:
        skipped.append((os.path.relpath(abs_path, root).replace(os.sep, "/"), reason))
    keep = np.flatnonzero(decoded.ok)
    array = decoded.array if len(keep) == len(samples) else decoded.array[keep]
    return ImageBank(array, samples.labels[keep], [samples.paths[i] for i in keep])


def _scan(cfg: TrainConfig, stop: StopToken) -> Iterator:
    try:
        return (yield from scan_steps(cfg.data, stop=stop, workers=cfg.workers or None))
    except LayoutError as exc:
        raise ConfigError(str(exc)) from None


def _is_better(metric: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if metric == "val_loss" else value > best


def _checkpoint_state(model, optimizer, scheduler, scaler, cfg: TrainConfig, meta: dict, epoch: int,
                      best: float | None, history: list) -> dict:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "scaler": scaler.state_dict() if scaler is not None else {},
        "epoch": epoch,
        "best_metric": best,
        "history": history,
        "config": cfg.to_dict(),
        "torch_rng": torch.get_rng_state(),
        **meta,
    }


def write_predictions(path: str, paths: list[str], classes: list[str], y_true: np.ndarray, probs: np.ndarray) -> None:
    y_pred = probs.argmax(axis=1)
    rows = ([p, classes[t], classes[q], *(f"{v:.6f}" for v in pr)] for p, t, q, pr in zip(paths, y_true, y_pred, probs))
    write_csv_atomic(path, ["path", "true", "predicted", *(f"p_{c}" for c in classes)], rows)


def train(cfg: TrainConfig, stop: StopToken | None = None, scan_result: ScanResult | None = None,
          splits: DataSplits | None = None) -> Iterator:
    """Train according to ``cfg``; every outcome ends in exactly one Finished or Failed event.

    ``splits`` overrides the train/val/test lists (cross-validation folds, comparisons).
    """
    stop = stop or StopToken()
    try:
        yield from _train(cfg, stop, scan_result, splits)
    except (ConfigError, ModelError, SplitError, StrategyError, CheckpointError, FloatingPointError) as exc:
        yield Failed(str(exc))
    except torch.cuda.OutOfMemoryError:
        yield Failed("the GPU ran out of memory: lower the batch size or the image size, or train on the CPU",
                     traceback.format_exc())
    except MemoryError:
        yield Failed("out of memory: lower the batch size or the image size", traceback.format_exc())
    except OSError as exc:
        yield Failed(f"file error during training: {exc}", traceback.format_exc())
    except Exception as exc:  # keep the app alive; the detail goes to the log
        yield Failed(f"training failed: {exc.__class__.__name__}: {exc}", traceback.format_exc())


def _train(cfg: TrainConfig, stop: StopToken, scan_result: ScanResult | None, splits: DataSplits | None) -> Iterator:
    dist = from_environment()
    try:
        yield from _train_ranked(cfg, stop, scan_result, splits, dist)
    finally:
        dist.close()


def _train_ranked(cfg: TrainConfig, stop: StopToken, scan_result: ScanResult | None, splits: DataSplits | None,
                  dist: DistContext) -> Iterator:
    cfg.validate()
    plan = parse_strategy(cfg.strategy)
    if dist.enabled and cfg.batch_size % dist.world:
        raise ConfigError(f"batch size {cfg.batch_size} must be divisible by the {dist.world} processes")
    if dist.enabled and cfg.device in ("auto", "cuda") and torch.cuda.is_available():
        device = torch.device("cuda", dist.local_rank)
    else:
        device = resolve_device(cfg.device)
    rank_batch = cfg.batch_size // dist.world
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    run_dir = os.path.abspath(cfg.out)
    os.makedirs(run_dir, exist_ok=True)
    last_path, best_path = os.path.join(run_dir, "last.pt"), os.path.join(run_dir, "best.pt")

    if scan_result is None:
        scan_result = yield from _scan(cfg, stop)
        if scan_result is None or stop.requested:
            yield Finished(RunResult(run_dir, {}, stopped=True), stopped=True)
            return
    if splits is None:
        group_of = None
        if cfg.group_near_duplicates and "val" not in scan_result.split_classes:
            from .duplicates import find_duplicates, group_keys

            groups = None
            for ev in find_duplicates(scan_result, stop=stop):
                if isinstance(ev, Finished):
                    groups = ev.result
                else:
                    yield ev
            if groups is None or stop.requested:
                yield Finished(RunResult(run_dir, {}, stopped=True), stopped=True)
                return
            group_of = group_keys(scan_result, groups)
        splits = make_splits(scan_result, cfg.val_fraction, cfg.resolved_split_seed(), group_of)
    classes = splits.classes
    n_classes = len(classes)
    channels = 1 if scan_result.grayscale else 3
    size = cfg.resolved_image_size()

    skipped: list[tuple[str, str]] = []
    banks = {}
    for name, samples in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        if samples is None:
            continue
        bank = yield from _decode_split(cfg.data, samples, channels, size, stop, cfg.workers, f"decoding {name}", skipped)
        if bank is None:
            yield Finished(RunResult(run_dir, {}, stopped=True), stopped=True)
            return
        banks[name] = bank
    train_bank, val_bank = banks["train"], banks["val"]
    if np.count_nonzero(np.bincount(train_bank.labels, minlength=n_classes)) < 2:
        raise SplitError("fewer than 2 classes have readable training images")
    if len(val_bank) == 0:
        raise SplitError("no readable validation images")
    if dist.is_main:
        write_csv_atomic(os.path.join(run_dir, "skipped.csv"), ["path", "reason"], skipped)

    train_counts = np.bincount(train_bank.labels, minlength=n_classes)
    seen_counts = expected_epoch_counts(plan, train_counts, cfg.sampling_strategy)
    prior = log_prior(np.maximum(seen_counts, 0))

    spec_pretrained = cfg.pretrained
    mean, std = channel_stats(train_bank.array)
    model = build_model(cfg.model, n_classes, channels, size, spec_pretrained, mean, std).to(device)
    if cfg.finetune == "head":
        freeze_all_but_head(model, cfg.model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _make_optimizer(cfg, params)
    first_epoch = shard(epoch_indices(plan, train_bank.labels, 0, cfg.seed, cfg.sampling_strategy), dist)
    steps_per_epoch = max(1, math.ceil(len(first_epoch) / rank_batch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg, step, steps_per_epoch))
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    loss_fn = BalancedLoss(
        n_classes,
        focal_gamma=cfg.focal_gamma if plan.focal else 0.0,
        logit_offset=torch.tensor(prior, dtype=torch.float32) if plan.balanced_softmax else None,
        label_smoothing=cfg.label_smoothing,
    ).to(device)
    meta = {
        "model_name": cfg.model, "classes": classes, "in_channels": channels, "image_size": size,
        "train_counts": train_counts.tolist(), "log_prior": prior.tolist(), "strategy": plan.name,
        "mean": list(model.mean.flatten().tolist()), "std": list(model.std.flatten().tolist()),
    }

    start_epoch, history, best_value, best_epoch = 0, [], None, 0
    if cfg.resume and os.path.exists(last_path):
        state = load_checkpoint(last_path)
        if state["classes"] != classes or state["model_name"] != cfg.model:
            raise CheckpointError("cannot resume: the checkpoint was trained on other classes or another model")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if isinstance(state.get("torch_rng"), torch.Tensor):
            torch.set_rng_state(state["torch_rng"])
        start_epoch = int(state["epoch"])
        history = list(state.get("history") or [])
        best_value = state.get("best_metric")
        best_epoch = max((h["epoch"] for h in history if h.get("is_best")), default=0)

    if dist.is_main:
        cfg.save(os.path.join(run_dir, "config.json"))
        write_json_atomic(os.path.join(run_dir, "split.json"), splits.to_dict())
    channels_last = cfg.channels_last and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_model = model
    if cfg.compile:
        train_model = torch.compile(model)
    if dist.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None)
    yield TrainStarted(run_dir, str(device), classes, train_counts.tolist(), seen_counts.tolist(), len(train_bank),
                       len(val_bank), len(banks["test"]) if "test" in banks else 0, cfg.epochs, steps_per_epoch,
                       start_epoch, len(skipped))

    ctx = EpochContext(
        model=train_model, bank=train_bank, loss_fn=loss_fn, optimizer=optimizer, scheduler=scheduler, device=device,
        batch_size=rank_batch, augment=make_augmentation(cfg.augment),
        strong_augment=strong_augmentation(cfg.augment) if plan.minority_augment else None,
        minority_mask=torch.from_numpy(minority_classes(train_counts)).to(device) if plan.minority_augment else None,
        mixer=make_batch_mixer(plan.mixup, plan.cutmix, n_classes, cfg.mixup_alpha, cfg.cutmix_alpha),
        scaler=scaler, generator=generator, channels_last=channels_last,
    )
    stopped = False
    patience_left = cfg.early_stopping
    for epoch in range(start_epoch, cfg.epochs):
        weights = class_weights_for_epoch(plan, seen_counts, epoch, cfg.beta, cfg.resolved_drw_epoch())
        loss_fn.set_class_weights(torch.tensor(weights, dtype=torch.float32) if weights is not None else None)
        indices = shard(epoch_indices(plan, train_bank.labels, epoch, cfg.seed, cfg.sampling_strategy), dist)
        train_loss, train_acc, n_seen, seconds, stopped = yield from train_one_epoch(ctx, indices, epoch + 1, stop)
        if stopped:
            break
        if dist.enabled:  # epoch loss and accuracy over all ranks' shards
            totals = torch.tensor([train_loss * n_seen, train_acc * n_seen, float(n_seen)], dtype=torch.float64)
            torch.distributed.all_reduce(totals)
            train_loss, train_acc, n_seen = float(totals[0] / totals[2]), float(totals[1] / totals[2]), int(totals[2])
        if not dist.is_main:  # rank 0 evaluates and writes; the others follow its decision
            if dist.agree(False):
                break
            continue
        probs, val_loss = evaluate(model, val_bank, device)
        m = compute_metrics(val_bank.labels, probs, classes)
        entry = {
            "epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss,
            "val_accuracy": m["accuracy"], "val_balanced_accuracy": m["balanced_accuracy"],
            "val_macro_f1": m["macro_f1"], "val_geometric_mean": m["geometric_mean"],
            "lr": optimizer.param_groups[0]["lr"], "seconds": seconds,
            "images_per_second": n_seen / seconds if seconds > 0 else 0.0,
        }
        value = val_loss if cfg.select_metric == "val_loss" else m[cfg.select_metric]
        is_best = _is_better(cfg.select_metric, value, best_value)
        entry["is_best"] = is_best
        history.append(entry)
        if is_best:
            best_value, best_epoch = value, epoch + 1
            patience_left = cfg.early_stopping
            save_checkpoint(_checkpoint_state(model, optimizer, scheduler, scaler, cfg, meta, epoch + 1, best_value, history), best_path)
            yield CheckpointSaved(best_path, "best", epoch + 1)
        else:
            patience_left -= 1
        save_checkpoint(_checkpoint_state(model, optimizer, scheduler, scaler, cfg, meta, epoch + 1, best_value, history), last_path)
        yield CheckpointSaved(last_path, "last", epoch + 1)
        write_csv_atomic(os.path.join(run_dir, "history.csv"), HISTORY_FIELDS, ([h[k] for k in HISTORY_FIELDS] for h in history))
        yield EpochEnd(epoch + 1, entry, is_best)
        end_now = bool(cfg.early_stopping and patience_left <= 0) or stop.requested
        if dist.agree(end_now):
            stopped = stop.requested
            break

    dist.barrier()
    if not dist.is_main:
        yield Finished(RunResult(run_dir, {}, stopped=stopped, extra={"rank": dist.rank}), stopped=stopped)
        return
    if not os.path.exists(best_path):
        yield Finished(RunResult(run_dir, {}, stopped=True, completed_epochs=0), stopped=True)
        return
    yield Progress("final evaluation", 0, 1, "evaluating the best checkpoint")
    best_state = load_checkpoint(best_path)
    model.load_state_dict(best_state["model"])
    eval_name = "test" if "test" in banks else "val"
    bank = banks[eval_name]
    probs, eval_loss = evaluate(model, bank, device)
    metrics = compute_metrics(bank.labels, probs, classes)
    metrics.update({
        "evaluated_on": eval_name, "loss": eval_loss, "history": history, "best_epoch": best_epoch,
        "select_metric": cfg.select_metric, "stopped": stopped, "device": str(device), "model": cfg.model,
        "strategy": plan.name, "seed": cfg.seed, "train_counts": train_counts.tolist(),
        "skipped_files": len(skipped), "log_prior": prior.tolist(), "world_size": dist.world,
    })
    write_predictions(os.path.join(run_dir, "predictions.csv"), bank.paths, classes, bank.labels, probs)
    write_json_atomic(os.path.join(run_dir, "metrics.json"), metrics)
    yield Progress("final evaluation", 1, 1)
    yield Finished(RunResult(run_dir, metrics, stopped=stopped, completed_epochs=len(history)), stopped=stopped)
