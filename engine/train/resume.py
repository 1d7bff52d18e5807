"""Continue an interrupted run from the settings it saved, so the GUI can resume it with one click
(the CLI's ``train --resume --out DIR`` takes the settings from its arguments instead).

The run's config.json is untrusted: it is read by :func:`read_config`, rebuilt into a
:class:`TrainConfig` and judged by ``TrainConfig.validate`` like any form, and it must name the
dataset that is open, so a crafted file cannot point training at another folder."""
from __future__ import annotations

import dataclasses
import os

from balancelab.engine.train.config import ConfigError, TrainConfig
from balancelab.engine.train.run_folder import (CONFIG, RunError, being_written, incomplete_reason, read_config,
                                                read_state, run_file)
from balancelab.engine.train.strategies import BAGGING, parse_strategy
from balancelab.engine.core.safe_paths import is_regular_file

RESUMABLE_STATES = ("incomplete", "running")  # "running" without a live writer: the process was killed


def resume_config(run_dir: str, data_root: str) -> TrainConfig:
    """The settings to continue ``run_dir`` with (``resume`` on, ``out`` the run itself); RunError
    or ConfigError with one sentence when it cannot be continued here."""
    run_dir = os.path.abspath(run_dir)
    name = os.path.basename(run_dir)
    reason = incomplete_reason(run_dir)
    if reason is None:
        raise RunError(f"run {name} is complete; there is nothing to resume")
    if read_state(run_dir) not in RESUMABLE_STATES or being_written(run_dir):
        raise RunError(reason)
    if not is_regular_file(run_file(run_dir, CONFIG)):
        raise RunError(f"run {name} stopped before it saved its settings; start a new run instead")
    cfg = dataclasses.replace(TrainConfig.from_dict(read_config(run_dir)), out=run_dir, resume=True)
    if not isinstance(cfg.data, str) or os.path.realpath(cfg.data) != os.path.realpath(data_root):
        raise RunError(f"run {name} was trained on another dataset ({str(cfg.data)[:200]}); open that one to resume it")
    cfg.validate()  # the saved settings judged like the form's: types, ranges, model, strategy, device
    if parse_strategy(cfg.strategy).has(BAGGING.name):
        raise ConfigError(f"run {name} is a balanced-bagging run, which cannot be resumed; start a new run")
    return cfg


def can_resume(run_dir: str, data_root: str) -> bool:
    try:
        resume_config(run_dir, data_root)
    except (RunError, ConfigError, OSError):
        return False
    return True
