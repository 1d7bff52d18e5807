"""Balanced bagging of networks (EasyEnsemble / imbalanced-learn's BalancedBaggingClassifier in
spirit): k networks, each trained on a different under-sample of the large classes, averaged.

What "balanced under-sample" means here: every class is cut to at most ``cap`` images, with
``cap = max(smallest class, fraction x largest class)`` and fraction 1/k by default. Classes at or
below the cap are kept whole in every member (the minority images are never dropped); each larger
class is cut to a different slice of one seeded permutation per member, so with fraction 1/k the
members see disjoint parts of the majority classes and together see every image once. Pure
EasyEnsemble (cap = the smallest class: 50 images per digit on long-tailed MNIST) throws away 99 %
of digit 0 and trains on 500 images; the README's undersample row (74.9 %) shows what that costs.
The member's own strategy (e.g. oversample+minority-augment) then balances inside its subset.
"""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from balancelab.engine.core.events import EventStream, Failed, Finished, Progress, StopToken
from balancelab.engine.data.scanner import ScanResult
from balancelab.engine.data.splits import DataSplits, make_splits
from balancelab.engine.train.config import ConfigError, TrainConfig
from balancelab.engine.train.distributed import from_environment
from balancelab.engine.train.ensemble_run import finish_ensemble
from balancelab.engine.train.run_events import MEMBER_PHASE, MemberStep, RunResult
from balancelab.engine.train.run_folder import MEMBERS, RunFolderWriter
from balancelab.engine.train.strategies import member_strategy, parse_strategy


def member_cap(counts: np.ndarray, k: int, fraction: float) -> int:
    """Images per class a member keeps at most (see the module docstring)."""
    counts = np.asarray(counts)
    present = counts[counts > 0]
    share = fraction if fraction > 0 else 1.0 / k
    return int(max(present.min(), np.ceil(share * present.max())))


def member_indices(labels: np.ndarray, k: int, fraction: float, seed: int, member: int) -> np.ndarray:
    """Indices (into ``labels``) of member ``member``'s training subset, sorted."""
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    cap = member_cap(counts, k, fraction)
    chosen = []
    for c, n in enumerate(counts):
        idx = np.flatnonzero(labels == c)
        if n <= cap:
            chosen.append(idx)
            continue
        perm = np.random.default_rng([seed, c]).permutation(idx)  # one order per class, shared by all members
        chosen.append(perm[(member * cap + np.arange(cap)) % n])  # member m's slice, wrapping around
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def _member_seed(seed: int, member: int) -> int:
    return (seed + 1_000_003 * member) % 2**32


def train_bagging(cfg: TrainConfig, stop: StopToken, scan_result: ScanResult | None,
                  splits: DataSplits | None) -> EventStream[RunResult]:
    """Train the k members into ``cfg.out/members/`` and write the averaged ensemble run."""
    from balancelab.engine.train.run import _scan, train  # run.py hands bagging over to here

    cfg.validate()
    if cfg.resume:
        raise ConfigError("a balanced-bagging run cannot be resumed; start a new run")
    if cfg.group_near_duplicates:
        raise ConfigError("balanced-bagging does not group near duplicates yet; train without that option")
    if from_environment().enabled:
        raise ConfigError("balanced-bagging trains in one process; launch it without torchrun")
    inner = member_strategy(parse_strategy(cfg.strategy))
    k = cfg.bagging_members
    with RunFolderWriter(os.path.abspath(cfg.out)) as folder:
        if splits is None:
            if scan_result is None:
                scan_result = yield from _scan(cfg, stop)
                if scan_result is None or stop.requested:
                    yield Finished(RunResult(folder.dir, {}, stopped=True), stopped=True)
                    return
            splits = make_splits(scan_result, cfg.val_fraction, cfg.resolved_split_seed())
        folder.write_config(cfg.to_dict())
        folder.write_split(splits.to_dict())
        folder.write_skipped([])
        folder.write_history([])
        names, sources, seconds = [], [], []
        for m in range(k):
            idx = member_indices(splits.train.labels, k, cfg.bagging_fraction, cfg.seed, m)
            name = f"member-{m + 1}"
            member_cfg = dataclasses.replace(cfg, out=os.path.join(folder.dir, MEMBERS, name), strategy=inner,
                                             seed=_member_seed(cfg.seed, m), split_seed=cfg.resolved_split_seed())
            member_splits = dataclasses.replace(splits, train=splits.train.subset(idx))
            yield MemberStep(name, m, k, Progress(MEMBER_PHASE, m, k, f"member {m + 1} of {k}: {len(idx)} "
                                                                           f"training images, {inner}"))
            started, result = time.perf_counter(), None
            for ev in train(member_cfg, stop, scan_result, member_splits):
                if isinstance(ev, Failed):
                    yield Failed(f"bagging member {m + 1} of {k}: {ev.message}", ev.detail)
                    return
                if isinstance(ev, Finished):
                    result = ev
                else:
                    yield MemberStep(name, m, k, ev)
            if result is None or result.stopped or not result.result.metrics:
                yield Finished(RunResult(folder.dir, {}, stopped=True), stopped=True)
                return
            yield MemberStep(name, m, k, result)
            names.append(name)
            sources.append(f"member {m + 1} of {k}: {len(idx)} training images")
            seconds.append(time.perf_counter() - started)
        yield Progress("averaging members", 0, 1)
        metrics = finish_ensemble(folder, names, [1.0] * k, "balanced-bagging", False, sources, {
            "model": cfg.model, "strategy": parse_strategy(cfg.strategy).name, "device": cfg.device,
            "select_metric": cfg.select_metric, "world_size": 1, "member_seconds": seconds,
            "bagging_cap": member_cap(splits.train.counts(len(splits.classes)), k, cfg.bagging_fraction),
            "train_counts": splits.train.counts(len(splits.classes)).tolist()})  # the data, not one member's slice
        yield Progress("averaging members", 1, 1)
    yield Finished(RunResult(folder.dir, metrics, completed_epochs=cfg.epochs))
