"""The training engine: a generator of typed events, shaped like torchvision's reference
classification scripts (separate ``train_one_epoch`` / ``evaluate``), with every imbalance
strategy, atomic checkpoints and a run folder that reproduces the run.

Usage (CLI, tests and GUI worker alike)::

    for event in train(config, stop_token):
        ...  # Progress, TrainStarted, BatchProgress, EpochEnd, CheckpointSaved, Finished/Failed
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import traceback
from typing import Iterator

import numpy as np
import torch

from balancelab.engine.train.augment import make_augmentation, make_batch_mixer, make_minority_mixers
from balancelab.engine.train.checkpoints import CheckpointError, CheckpointKeeper, checked_history
from balancelab.engine.train.decoupled import RetrainError, final_linear, retrain_phase
from balancelab.engine.train.ema import ModelEma
from balancelab.engine.train.config import ConfigError, TrainConfig
from balancelab.engine.data.splits import DataSplits, SplitError, make_splits
from balancelab.engine.train.distributed import DistContext, from_environment, shard
from balancelab.engine.core.events import EventStream, Failed, Finished, Progress, StopToken, forward
from balancelab.engine.train.losses import BalancedLoss
from balancelab.engine.core.metrics import compute_metrics
from balancelab.engine.train.models import ModelError, build_model, freeze_all_but_head, model_spec
from balancelab.engine.data.scanner import LayoutError, ScanResult, scan_steps
from balancelab.engine.train.strategies import BAGGING, StrategyError, class_weights_for_epoch, epoch_indices, expected_epoch_counts, log_prior, minority_classes, parse_strategy
from balancelab.engine.train.precise_bn import recalibrate_batchnorm
from balancelab.engine.train.run_events import CheckpointSaved, EpochEnd, RunResult, TrainStarted
from balancelab.engine.train.loop import (EpochContext, evaluate, make_optimizer, make_scheduler,
                                          resume_learning_rate, schedule_epoch_end, train_one_epoch)
from balancelab.engine.core.safe_paths import is_regular_file
from balancelab.engine.train.resume import ResumeRefused, check_restart, refuse_changed_split
from balancelab.engine.train.run_folder import LAST, RunError, RunFolderWriter, discard_reservation, read_state, run_file
from balancelab.engine.data.image_bank import decode_split, channel_stats
from balancelab.engine.train.device import resolve_device
from balancelab.engine.core.metrics import HEADLINE


# --- the run ------------------------------------------------------------------------------------


def _scan(cfg: TrainConfig, stop: StopToken) -> Iterator:
    try:
        return (yield from scan_steps(cfg.data, stop=stop, workers=cfg.workers or None))
    except LayoutError as exc:
        raise ConfigError(str(exc)) from None


def _checkpoint_state(model, optimizer, scheduler, scaler, cfg: TrainConfig, meta: dict, epoch: int,
                      best: float | None, history: list, ema: ModelEma | None, augment_rng: torch.Generator) -> dict:
    # "model" is the network a run keeps (the weight average when there is one: what evaluate,
    # predict and the exports load); "train_model" the raw weights training resumes from
    averaged = {"train_model": model.state_dict(), "ema_steps": ema.steps} if ema is not None else {}
    return {
        "model": ema.state_dict() if ema is not None else model.state_dict(),
        **averaged,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "scaler": scaler.state_dict() if scaler is not None else {},
        "epoch": epoch,
        "best_metric": best,
        "history": history,
        "config": cfg.to_dict(),
        "torch_rng": torch.get_rng_state(),
        "augment_rng": augment_rng.get_state(),  # with torch_rng: a resumed run draws what an uninterrupted one does
        **meta,
    }


def _prepare_data(cfg: TrainConfig, stop: StopToken, scan_result: ScanResult | None,
                  splits: DataSplits | None) -> Iterator:
    """Scan, split and decode; returns (scan_result, splits, banks, skipped), or None when stopped."""
    if scan_result is None:
        scan_result = yield from _scan(cfg, stop)
        if scan_result is None or stop.requested:
            return None
    if splits is None:
        group_of = None
        if cfg.group_near_duplicates and "val" not in scan_result.split_classes:
            from balancelab.engine.data.duplicates import find_duplicates, group_keys

            groups = yield from forward(find_duplicates(scan_result, stop=stop))
            if groups is None or stop.requested:
                return None
            group_of = group_keys(scan_result, groups)
        splits = make_splits(scan_result, cfg.val_fraction, cfg.resolved_split_seed(), group_of)
    channels = 1 if scan_result.grayscale else 3
    size = cfg.resolved_image_size()

    skipped = scan_result.left_out_files()  # unreadable files the scan found: not used either
    banks = {}
    for name, samples in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        if samples is None:
            continue
        bank = yield from forward(decode_split(cfg.data, samples, channels, size, stop, cfg.workers,
                                               f"decoding {name}", skipped))
        if bank is None:
            return None
        banks[name] = bank
    return scan_result, splits, banks, skipped


def _rank0_value(dist: DistContext, value):
    """Rank 0's ``value`` on every rank (itself when training in one process)."""
    if not dist.enabled:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _absent(classes: list[str], labels: np.ndarray) -> list[str]:
    counts = np.bincount(labels, minlength=len(classes))
    return [c for c, n in zip(classes, counts) if n == 0]


def train(cfg: TrainConfig, stop: StopToken | None = None, scan_result: ScanResult | None = None,
          splits: DataSplits | None = None) -> EventStream[RunResult]:
    """Train according to ``cfg``; every outcome ends in exactly one Finished or Failed event.

    ``splits`` overrides the train/val/test lists (cross-validation folds, comparisons).
    """
    stop = stop or StopToken()
    bagging, resuming_helps = False, True
    if isinstance(cfg.data, str) and cfg.data and isinstance(cfg.out, str) and cfg.out:
        # recorded as absolute paths: a run's config.json must still name its data from another folder
        cfg = dataclasses.replace(cfg, data=os.path.abspath(cfg.data), out=os.path.abspath(cfg.out))
    try:
        bagging = isinstance(cfg.strategy, str) and parse_strategy(cfg.strategy).has(BAGGING.name)
        if bagging:  # k members, averaged
            from balancelab.engine.train.bagging import train_bagging

            yield from train_bagging(cfg, stop, scan_result, splits)
            return
        yield from _train(cfg, stop, scan_result, splits)
        return
    except (ConfigError, ModelError, SplitError, StrategyError, CheckpointError, RunError, RetrainError,
            FloatingPointError) as exc:
        message, detail = str(exc), ""
        resuming_helps = not isinstance(exc, ResumeRefused)  # resuming is what just failed
    except torch.cuda.OutOfMemoryError:
        message = "the GPU ran out of memory: lower the batch size or the image size, or train on the CPU"
        detail = traceback.format_exc()
    except MemoryError:
        message, detail = "out of memory: lower the batch size or the image size", traceback.format_exc()
    except OSError as exc:  # one line for the user: a full disk is not a bug
        where = f" ({exc.filename})" if exc.filename else ""
        message, detail = f"file error during training: {exc.strerror or exc}{where}", ""
    except Exception as exc:  # keep the app alive; the detail goes to the log
        message, detail = f"training failed: {exc.__class__.__name__}: {exc}", traceback.format_exc()
    hint = _resume_hint(cfg) if resuming_helps and not bagging else ""
    discard_reservation(cfg.out)  # refused before its folder was opened: the reserved folder goes
    yield Failed(message + hint, detail)


def _resume_hint(cfg: TrainConfig) -> str:
    """A run that failed after an epoch was saved is not lost: say where it is and how to go on."""
    run_dir = os.path.abspath(cfg.out) if isinstance(cfg.out, str) and cfg.out else ""
    if not run_dir or read_state(run_dir) != "incomplete" or not is_regular_file(run_file(run_dir, LAST)):
        return ""
    return (f"; the epochs trained so far are kept in {run_dir}: fix the cause, then continue with "
            f"`resume {run_dir}`, or delete the folder")


def _train(cfg: TrainConfig, stop: StopToken, scan_result: ScanResult | None, splits: DataSplits | None) -> Iterator:
    dist = from_environment()
    try:
        yield from _train_ranked(cfg, stop, scan_result, splits, dist)
    except BaseException:
        dist.close()
        raise
    dist.close(together=True)


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
    torch.manual_seed(cfg.seed)
    run_dir = os.path.abspath(cfg.out)
    # rank 0 is the one writer of the run folder: it refuses a folder holding other files or another
    # run (unless resuming), and locks it; the others only train
    folder = RunFolderWriter(run_dir, cfg.resume) if dist.is_main else None
    with folder or contextlib.nullcontext():
        yield from _train_in_folder(cfg, stop, scan_result, splits, dist, plan, device, folder)


def _train_in_folder(cfg: TrainConfig, stop: StopToken, scan_result: ScanResult | None, splits: DataSplits | None,
                     dist: DistContext, plan, device: torch.device, folder: RunFolderWriter | None) -> Iterator:
    run_dir = os.path.abspath(cfg.out)
    # before minutes of decoding: a folder that must not be trained into again, or other settings
    resumed = check_restart(run_dir, cfg, folder is not None and folder.was_finished) if cfg.resume else None
    if resumed is None:
        cfg.check_pretrained_file()  # a resumed run's weights come from last.pt instead
    rank_batch = cfg.batch_size // dist.world
    generator = torch.Generator().manual_seed(cfg.seed)
    prepared = yield from _prepare_data(cfg, stop, scan_result, splits)
    if prepared is None:
        yield Finished(RunResult(run_dir, {}, stopped=True), stopped=True)
        return
    scan_result, splits, banks, skipped = prepared
    classes = splits.classes
    n_classes = len(classes)
    channels = 1 if scan_result.grayscale else 3
    size = cfg.resolved_image_size()
    train_bank, val_bank = banks["train"], banks["val"]
    if np.count_nonzero(np.bincount(train_bank.labels, minlength=n_classes)) < 2:
        raise SplitError("fewer than 2 classes have readable training images")
    if len(val_bank) == 0:
        raise SplitError("no readable validation images")

    train_counts = np.bincount(train_bank.labels, minlength=n_classes)
    seen_counts = expected_epoch_counts(plan, train_counts, cfg.sampling_strategy)
    prior = log_prior(np.maximum(seen_counts, 0))

    spec_pretrained = cfg.pretrained if resumed is None else None  # last.pt's weights replace them
    mean, std = channel_stats(train_bank.array)
    model = build_model(cfg.model, n_classes, channels, size, spec_pretrained, mean, std, cfg.deskew).to(device)
    if cfg.finetune == "head":
        freeze_all_but_head(model, cfg.model)
    if plan.retrain:
        final_linear(model, cfg.model)  # refuse a model without a linear classifier before training, not after
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(cfg, params)
    first_epoch = shard(epoch_indices(plan, train_bank.labels, 0, cfg.seed, cfg.sampling_strategy), dist)
    steps_per_epoch = max(1, math.ceil(len(first_epoch) / rank_batch))
    scheduler = make_scheduler(cfg, optimizer, steps_per_epoch)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    loss_fn = BalancedLoss(
        n_classes,
        focal_gamma=cfg.focal_gamma if plan.focal else 0.0,
        logit_offset=torch.tensor(prior, dtype=torch.float32) if plan.balanced_softmax else None,
        label_smoothing=cfg.label_smoothing,
    ).to(device)

    tolerance = 0.0 if cfg.select_metric == "val_loss" else \
        HEADLINE[cfg.select_metric].resolution(np.bincount(val_bank.labels, minlength=n_classes))
    keeper = CheckpointKeeper(run_dir, cfg.select_metric, cfg.early_stopping, tolerance)
    start_epoch, history = 0, []
    split_record = splits.to_dict()  # one list of every image: compared on resume, then written
    state = resumed  # checked before decoding (check_restart)
    if state is not None:
        start_epoch, history = _restore(state, cfg, run_dir, classes, split_record, keeper,
                                        (model, optimizer, scheduler, scaler, generator))
    # after a resume's load: the normalisation is the checkpoint's (a pretrained model's, whose file
    # is not read again)
    meta = {
        "model_name": cfg.model, "classes": classes, "in_channels": channels, "image_size": size,
        "train_counts": train_counts.tolist(), "log_prior": prior.tolist(), "strategy": plan.name,
        "mean": list(model.mean.flatten().tolist()), "std": list(model.std.flatten().tolist()),
        "deskew": cfg.deskew,
    }

    if folder:  # the first writes, after every check that can refuse the run (a refused resume changes nothing)
        folder.write_skipped(skipped)
        folder.write_config(cfg.to_dict())
        folder.write_split(split_record)
    channels_last = cfg.channels_last and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    if ema is not None and state is not None and "train_model" in state:
        steps = state.get("ema_steps")
        ema.load(state["model"], steps if isinstance(steps, int) and steps >= 0 else 0)
    eval_model = ema.module if ema is not None else model
    train_model = model
    if cfg.compile:
        train_model = torch.compile(model)
    if dist.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None)
    yield TrainStarted(run_dir, str(device), classes, train_counts.tolist(), seen_counts.tolist(), len(train_bank),
                       len(val_bank), len(banks["test"]) if "test" in banks else 0, cfg.epochs, steps_per_epoch,
                       start_epoch, len(skipped), dict(splits.excluded), list(history), rank_batch)

    minority = plan.minority_augmentation
    ctx = EpochContext(
        model=train_model, bank=train_bank, loss_fn=loss_fn, optimizer=optimizer, scheduler=scheduler, device=device,
        batch_size=rank_batch, augment=make_augmentation(cfg.augment),
        strong_augment=minority.preset(cfg.augment) if minority else None,
        minority_mask=torch.from_numpy(minority_classes(train_counts)).to(device) if minority else None,
        mixer=make_minority_mixers(plan, train_counts, n_classes, cfg.mixup_alpha, cfg.remix_kappa, cfg.remix_tau,
                                   minority_classes(train_counts),
                                   make_batch_mixer(plan.mixup, plan.cutmix, n_classes, cfg.mixup_alpha, cfg.cutmix_alpha)),
        scaler=scaler, generator=generator, channels_last=channels_last,
        aux_weight=model_spec(cfg.model).aux_loss_weight, ema=ema,
    )
    stopped = False
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
            if cfg.schedule == "plateau":
                schedule_epoch_end(scheduler, _rank0_value(dist, None))
            if dist.agree(False):
                break
            continue
        recalibrate_batchnorm(eval_model, train_bank, device, rank_batch, channels_last, seed=cfg.seed + epoch)
        probs, val_loss = evaluate(eval_model, val_bank, device)
        m = compute_metrics(val_bank.labels, probs, classes)
        entry = {
            "epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss,
            **{f"val_{key}": m[key] for key in HEADLINE},
            "lr": optimizer.param_groups[0]["lr"], "seconds": seconds,
            "images_per_second": n_seen / seconds if seconds > 0 else 0.0,
        }
        value = val_loss if cfg.select_metric == "val_loss" else m[cfg.select_metric]
        entry["is_best"] = is_best = keeper.improves(value)
        history.append(entry)
        if cfg.schedule == "plateau":  # every rank cuts the rate on rank 0's validation loss (before saving)
            schedule_epoch_end(scheduler, _rank0_value(dist, val_loss))
        for kind, path in keeper.step(epoch + 1, value, lambda best: _checkpoint_state(
                model, optimizer, scheduler, scaler, cfg, meta, epoch + 1, best, history, ema, generator)):
            yield CheckpointSaved(path, kind, epoch + 1)
        folder.write_history(history)
        yield EpochEnd(epoch + 1, entry, is_best)
        end_now = keeper.exhausted or stop.requested
        if dist.agree(end_now):
            stopped = stop.requested
            break

    dist.barrier()
    if not dist.is_main:
        yield Finished(RunResult(run_dir, {}, stopped=stopped, extra={"rank": dist.rank}), stopped=stopped)
        return
    if not keeper.has_best:
        yield Finished(RunResult(run_dir, {}, stopped=True, completed_epochs=0), stopped=True)
        return
    best_state = keeper.load_best()
    model.load_state_dict(best_state["model"])
    retrain = None
    if plan.retrain and not stopped:
        retrain, stopped = yield from retrain_phase(cfg, plan.retrain, model, best_state, keeper.best_path,
                                                    train_bank, val_bank, classes, device, stop)
    yield Progress("final evaluation", 0, 1, "evaluating the best checkpoint")
    eval_name = "test" if "test" in banks else "val"
    bank = banks[eval_name]
    probs, eval_loss = evaluate(model, bank, device)
    metrics = compute_metrics(bank.labels, probs, classes)
    metrics.update({
        "evaluated_on": eval_name, "loss": eval_loss, "history": history, "best_epoch": keeper.best_epoch,
        "select_metric": cfg.select_metric, "selection_tolerance": keeper.tolerance, "stopped": stopped,
        "device": str(device), "model": cfg.model,
        "strategy": plan.name, "seed": cfg.seed, "train_counts": train_counts.tolist(),
        "skipped_files": len(skipped), "log_prior": prior.tolist(), "world_size": dist.world,
        # a class too small to reach validation (or the evaluated split) is missing from those
        # scores: say so, so the app and the CLI can warn
        "classes_without_validation_images": _absent(classes, val_bank.labels),
        "excluded_classes": dict(splits.excluded),
        "classes_without_evaluation_images": _absent(classes, bank.labels),
    })
    if retrain is not None:
        metrics["retrain"] = retrain
    folder.write_predictions(bank.paths, classes, bank.labels, probs)
    folder.finish(metrics)
    yield Progress("final evaluation", 1, 1)
    yield Finished(RunResult(run_dir, metrics, stopped=stopped, completed_epochs=len(history)), stopped=stopped)


def _restore(state: dict, cfg: TrainConfig, run_dir: str, classes: list[str], split_record: dict,
             keeper: CheckpointKeeper, trainer: tuple) -> tuple[int, list[dict]]:
    """Put a resumed run's last.pt (untrusted) back into the model, optimizer, schedule, scaler and
    random generators; returns (epochs done, their history). Anything that does not fit is a
    ResumeRefused, raised before the run folder is written."""
    model, optimizer, scheduler, scaler, generator = trainer
    if state["classes"] != classes or state["model_name"] != cfg.model:
        raise ResumeRefused("cannot resume: the checkpoint was trained on other classes or another model")
    if state.get("deskew", False) != cfg.deskew:  # a checkpoint from before the setting was not deskewed
        raise ResumeRefused(f"cannot resume: the checkpoint was trained {'with' if state.get('deskew') else 'without'} "
                            f"deskewing; give the same setting, or start a new run in another folder")
    start_epoch = state["epoch"]
    refuse_changed_split(run_dir, split_record)
    try:
        model.load_state_dict(state.get("train_model", state["model"]))
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        resume_learning_rate(scheduler, optimizer)
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if isinstance(state.get("torch_rng"), torch.Tensor):
            torch.set_rng_state(state["torch_rng"])
        if "augment_rng" in state:  # checkpoints before it: re-seeded
            generator.set_state(state["augment_rng"])
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:  # crafted or torn: not resumable
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ResumeRefused(f"cannot resume: {keeper.last_path} is damaged ({first}); start a new run") from None
    history = checked_history(state.get("history"), start_epoch)
    if len(history) != start_epoch:  # crafted or torn: the curves, history.csv and the kept epoch would not add up
        raise ResumeRefused(f"cannot resume: {keeper.last_path} is damaged (its history holds {len(history)} "
                            f"readable epoch(s) of {start_epoch}); start a new run")
    keeper.restore(state)
    return start_epoch, history
