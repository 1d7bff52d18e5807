"""One training epoch and one evaluation pass, shaped like torchvision's reference ``train_one_epoch`` / ``evaluate``; plus the optimizer and learning-rate schedule."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterator
import numpy as np
import torch
import torch.nn.functional as F
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.core.events import StopToken
from balancelab.engine.train.losses import BalancedLoss
from balancelab.engine.train.run_events import BatchProgress
from balancelab.engine.data.image_bank import ImageBank
from balancelab.engine.train.ema import ModelEma
from balancelab.engine.train.models import main_and_aux


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
    aux_weight: float = 0.0  # the model's auxiliary-classifier loss weight (Inception v3: 0.4)
    ema: ModelEma | None = None  # the averaged weights, moved after every optimizer step


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
            logits, aux = main_and_aux(model(x))
            loss = ctx.loss_fn(logits, target)
            if aux is not None and ctx.aux_weight:  # the configured strategy loss on both heads
                loss = loss + ctx.aux_weight * ctx.loss_fn(aux, target)
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
        if ctx.ema is not None:
            ctx.ema.update()
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


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
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


class PlateauSchedule:
    """torch's ReduceLROnPlateau on the validation loss, once per epoch (the course's schedule),
    after an optional per-step linear warm-up. One object so the checkpoint saves and resume
    restores both (``state_dict`` / ``load_state_dict``), like the other schedules."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> None:
        self.optimizer = optimizer
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        self.warm = cfg.warmup_epochs * steps_per_epoch
        self.steps = 0
        self._warm_up()

    def _warm_up(self) -> None:
        if self.steps < self.warm:  # as lr_factor: (step + 1) / warm-up steps
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = base * (self.steps + 1) / self.warm
        elif self.warm and self.steps == self.warm:
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = base

    def step(self) -> None:
        """After each optimizer step: only the warm-up changes the rate within an epoch."""
        self.steps += 1
        self._warm_up()

    def epoch_end(self, val_loss: float) -> None:
        """After each epoch's validation: cut the rate when the loss has stopped falling."""
        if self.steps >= self.warm:
            self.plateau.step(val_loss)

    def state_dict(self) -> dict:
        return {"plateau": self.plateau.state_dict(), "steps": self.steps, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        self.plateau.load_state_dict(state["plateau"])
        self.steps = int(state["steps"])
        self.base_lrs = [float(v) for v in state["base_lrs"]]


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """The learning-rate schedule of ``cfg``: per-step factors (none, step, cosine) or plateau."""
    if cfg.schedule == "plateau":
        return PlateauSchedule(optimizer, cfg, steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg, step, steps_per_epoch))


def resume_learning_rate(scheduler, optimizer: torch.optim.Optimizer) -> None:
    """After a resume loaded the optimizer: the next step's rate is the schedule's for that step
    under the run's settings now, not the rate the checkpoint's optimizer last had. A finished
    cosine ends at 0, so a run given more epochs took its first new step at rate 0; the raised
    epoch count stretches the cosine from here. (The plateau schedule keeps its own state.)"""
    if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["lr"] = base * factor(scheduler.last_epoch)


def schedule_epoch_end(scheduler, val_loss: float) -> None:
    """Tell an epoch-driven schedule (plateau) the epoch's validation loss; others ignore it."""
    if isinstance(scheduler, PlateauSchedule):
        scheduler.epoch_end(val_loss)
