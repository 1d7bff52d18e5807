"""Going on with a run: which settings may change when it resumes, the checks ``train --resume``
makes before it writes anything, and the GUI's one-click resume of an interrupted run from the
settings it saved.

Every file read here is untrusted (config.json, the config inside last.pt): values are compared
after they are put in one form (the model's default image size, the split seed, the deferred
re-weighting epoch, the strategy's components), without trusting their types, and a crafted
config.json must name the dataset that is open, so it cannot point training at another folder."""
from __future__ import annotations

import dataclasses
import os
import reprlib

from balancelab.engine.core.safe_paths import is_regular_file
from balancelab.engine.train.checkpoints import CheckpointError, CheckpointReadError, load_checkpoint
from balancelab.engine.train.config import INT_RANGES, ConfigError, TrainConfig, setting_words
from balancelab.engine.train.device import check_device
from balancelab.engine.train.run_folder import (CONFIG, ENSEMBLE, LAST, MEMBERS, METRICS, SPLIT, RunError,
                                                being_written, incomplete_reason, read_config, read_metrics,
                                                read_split, read_state, run_file)
from balancelab.engine.train.strategies import BAGGING, COMPONENTS, StrategyError, parse_strategy


class ResumeRefused(ConfigError):
    """A run that cannot go on as asked: other settings, another or a changed dataset, too few
    epochs, a damaged last.pt. Retrying the same command cannot help, so unlike other failures of a
    run with saved epochs it gets no "continue with resume" hint."""


RESUMABLE_STATES = ("incomplete", "running")  # "running" without a live writer: the process was killed

# settings a resumed run may change: where the run and its data live, how fast it trains, and how
# long it goes on (a raised --epochs continues a run; the cosine schedule then stretches over the
# new length from the next epoch, as each epoch's rate in the history shows)
MAY_CHANGE = frozenset({"data", "out", "resume", "device", "workers", "amp", "channels_last", "compile", "epochs",
                        "early_stopping"})
NOT_A_SETTING = type("NotASetting", (), {"__repr__": lambda self: "a value that is no setting"})()
BASE_SETTINGS = frozenset({"augment"})  # listed by components that vary it, but every run reads it
_SHORT = reprlib.Repr()  # a saved value named in a message: short, and never recursing into a crafted nest
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict = 2, 40, 40, 4, 4


def _canonical(config: dict) -> dict:
    """``config`` with each setting in the form that decides training: 0 px is the model's size,
    split seed -1 the seed, a strategy its sorted components, the drw start two thirds of the
    epochs for -1, a pretrained path only whether there was one (the weights are in last.pt by
    now); settings that nothing reads under these choices (a component's parameters without it,
    plateau or step settings under another schedule, momentum without SGD) are left out."""
    out = {k: v if isinstance(v, (str, int, float, bool, list, dict, type(None))) else NOT_A_SETTING
           for k, v in config.items() if k not in MAY_CHANGE}  # a tensor, say, would refuse ``== 0`` below
    model, seed, epochs = config.get("model"), config.get("seed"), config.get("epochs")
    if out.get("image_size") == 0 and isinstance(model, str):
        try:
            out["image_size"] = TrainConfig("", "", model=model).resolved_image_size()
        except ValueError:  # an unknown model: compared as it is written
            pass
    if out.get("split_seed") == -1 and isinstance(seed, int):
        out["split_seed"] = seed
    if isinstance(out.get("strategy"), str):
        try:
            out["strategy"] = "+".join(sorted(parse_strategy(out["strategy"]).components)) or "none"
        except StrategyError:
            pass
    used = str(out.get("strategy")).split("+")
    read = {p for name, c in COMPONENTS.items() if name in used for p in c.params}
    for param in {p for c in COMPONENTS.values() for p in c.params} - read - BASE_SETTINGS:
        out.pop(param, None)  # a setting only strategy components read (the registry's), none of them here
    if out.get("drw_epoch") == -1 and isinstance(epochs, int) and not isinstance(epochs, bool):
        out["drw_epoch"] = max(1, (2 * epochs) // 3)
    for prefix, needed in (("plateau_", out.get("schedule") == "plateau"), ("step_", out.get("schedule") == "step")):
        if not needed:
            for key in [k for k in out if k.startswith(prefix)]:
                del out[key]
    if out.get("optimizer") != "sgd":
        out.pop("momentum", None)
    out.pop("extra", None)  # read by nothing
    if "pretrained" in out:
        out["pretrained"] = bool(out["pretrained"])
    return out


def _same(before: object, now: object) -> bool:
    try:  # a crafted value (a tensor, a list nested thousands deep) may refuse to be compared
        return bool(before == now) and isinstance(before, bool) == isinstance(now, bool)
    except Exception:  # noqa: BLE001 - whatever it raised, it is not the same setting
        return False


def _shown(value: object) -> str:
    try:
        return _SHORT.repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is named by its type
        return f"a {type(value).__name__}"


def resume_conflicts(cfg: TrainConfig, saved: object) -> list[str]:
    """Every setting ``cfg`` changes against ``saved`` (the config the run's epochs so far were
    trained with), in words; empty when the run may go on with ``cfg``."""
    if not isinstance(saved, dict):
        return []
    # a setting the saved config does not name is its default: a setting added since (deskew,
    # say) keeps what training did before it existed, and turning it on now would mix the two
    before = _canonical({**TrainConfig(data="", out="").to_dict(), **saved})
    now = _canonical(cfg.to_dict())
    return [f"{setting_words(name)} {_shown(before[name])}, not {_shown(now[name])}"
            for name in now if name in before and not _same(before[name], now[name])]


def refuse_other_settings(cfg: TrainConfig, saved: object, what: str) -> None:
    conflicts = resume_conflicts(cfg, saved)
    if conflicts:
        raise ResumeRefused(f"cannot resume: {what} {'; '.join(conflicts)}; give the same settings, or start a new "
                            "run in another folder")


def check_restart(run_dir: str, cfg: TrainConfig, was_finished: bool = False) -> dict | None:
    """Before minutes of decoding, for ``train --resume``: the loaded last.pt to go on from, or
    None to start the run there. An ensemble or an ensemble's member is never trained again (the
    ensemble's recorded results would no longer be its own); a checkpoint's settings must be the
    ones given (:func:`refuse_other_settings`) and a finished run must be asked for more epochs
    (:func:`check_finished_run`); without last.pt the run would start from scratch, which must not
    replace a finished run or continue a run begun with other settings."""
    if os.path.lexists(run_file(run_dir, ENSEMBLE)):
        raise ConfigError(f"{run_dir} is an ensemble run (built by `ensemble` or balanced-bagging), not one "
                          "network: it cannot be resumed")
    parent = os.path.dirname(run_dir)
    if os.path.basename(parent) == MEMBERS and os.path.lexists(run_file(os.path.dirname(parent), ENSEMBLE)):
        raise ConfigError(f"{run_dir} is a member of the ensemble {os.path.dirname(parent)}; training it further "
                          "would change that ensemble's results: train a new run instead")
    if is_regular_file(run_file(run_dir, LAST)):
        try:
            state = load_checkpoint(run_file(run_dir, LAST))
        except CheckpointReadError:
            raise  # the disk failed, not the file: resuming again may work
        except CheckpointError as exc:  # truncated or crafted: resuming again will not mend it
            raise ResumeRefused(f"cannot resume: {exc}; start a new run") from None
        saved = saved_training_settings(run_dir, state)
        refuse_other_settings(cfg, saved, "the run's epochs so far were trained with")
        trained = state.get("epoch")
        if not isinstance(trained, int) or isinstance(trained, bool) or not 0 <= trained <= INT_RANGES["epochs"][1]:
            raise ResumeRefused(f"cannot resume: {run_file(run_dir, LAST)} records no epoch count (a whole number)")
        if trained > cfg.epochs:
            raise ResumeRefused(f"cannot resume: the run has trained {trained} epochs already, more than "
                                f"--epochs {cfg.epochs}; give at least {trained}")
        if was_finished:
            check_finished_run(run_dir, cfg, saved, trained)
        return state
    if is_regular_file(run_file(run_dir, METRICS)):
        raise RunError(f"run {run_dir} is finished but its {LAST} is missing, so there is nothing to continue from; "
                       "start a new run in another folder")
    if is_regular_file(run_file(run_dir, CONFIG)):
        refuse_other_settings(cfg, read_config(run_dir), "the run was started with")
    return None


def saved_training_settings(run_dir: str, state: dict) -> dict | None:
    """The settings a run's saved epochs were trained with: last.pt's own record, else its
    config.json (a checkpoint without one must not accept any settings), else None."""
    saved = state.get("config")
    if isinstance(saved, dict):
        return saved
    return read_config(run_dir) if is_regular_file(run_file(run_dir, CONFIG)) else None


def refuse_changed_split(run_dir: str, split: dict) -> None:
    """The images a run trained and validated on must be the ones it goes on with: a dataset edited
    (curated, relabelled) or swapped since would draw a new hold-out, and validation images of the
    first epochs would become training images of the next."""
    if not is_regular_file(run_file(run_dir, SPLIT)):
        return
    before = read_split(run_dir)
    changed = [part for part in ("train", "val") if sorted(map(tuple, before.get(part) or [])) != sorted(
        map(tuple, split.get(part) or []))]
    if list(before.get("classes") or []) != list(split.get("classes") or []) or changed:
        what = " and ".join(changed) or "class"
        raise ResumeRefused(f"cannot resume: the dataset changed since the run began (its {what} images differ "
                            f"from split.json); train a new run on it")


def check_finished_run(run_dir: str, cfg: TrainConfig, saved: dict | None, trained: int) -> None:
    """A finished run trains further only when asked for more epochs than it was started with, or
    when a user stopped it early; re-running its end would evaluate again (and re-train a
    re-trained classifier) for nothing."""
    before = saved.get("epochs") if isinstance(saved, dict) else None
    done = max(before, trained) if isinstance(before, int) and not isinstance(before, bool) else trained
    if cfg.epochs > done or (cfg.epochs > trained and read_metrics(run_dir).get("stopped") is True):
        return
    raise ConfigError(f"run {os.path.basename(run_dir)} finished its {done} epochs; give --epochs above {done} to "
                      "train it further")


def saved_settings(run_dir: str, finished_too: bool = False) -> TrainConfig:
    """The settings ``run_dir`` saved, to continue it with (``resume`` on, ``out`` the run itself,
    the device "auto" where the saved one is not here), not yet validated: the caller may still
    change what :data:`MAY_CHANGE` allows. An interrupted run, or with ``finished_too`` a finished
    one (to train more epochs); RunError with one sentence otherwise."""
    run_dir = os.path.abspath(run_dir)
    name = os.path.basename(run_dir)
    reason = incomplete_reason(run_dir)
    if reason is None and not finished_too:
        raise RunError(f"run {name} is complete; there is nothing to resume")
    if reason is not None and (read_state(run_dir) not in RESUMABLE_STATES or being_written(run_dir)):
        raise RunError(reason)
    if not is_regular_file(run_file(run_dir, CONFIG)):
        raise RunError(f"run {name} stopped before it saved its settings; start a new run instead")
    cfg = dataclasses.replace(TrainConfig.from_dict(read_config(run_dir)), out=run_dir, resume=True)
    if cfg.drw_epoch == -1 and isinstance(cfg.epochs, int) and not isinstance(cfg.epochs, bool):
        cfg = dataclasses.replace(cfg, drw_epoch=cfg.resolved_drw_epoch())  # stays put when --epochs is raised
    try:
        check_device(cfg.device)
    except (ConfigError, TypeError, ValueError):  # saved on a machine with a GPU: the device may change
        cfg = dataclasses.replace(cfg, device="auto")
    return cfg


def checked_for_resume(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` judged like the form's settings (types, ranges, model, strategy, data folder), and
    refused for a balanced-bagging run, which trains several networks and cannot go on. A run
    that recorded its dataset relative to a folder it was started from (older runs did) is told to
    name the dataset."""
    data = cfg.data
    if isinstance(data, str) and data and "\0" not in data and not os.path.isabs(data) and not os.path.isdir(data):
        raise ConfigError(f"run {os.path.basename(cfg.out)} recorded its dataset as {data[:200]!r}, relative to "
                          "the folder it was started in; give the dataset folder (resume --data ROOT)")
    try:
        cfg.validate()
    except ConfigError as exc:  # a setting nobody typed now: say where it comes from
        if exc.setting == "data":  # where the data is now may have been given (resume --data)
            raise
        raise ConfigError(f"{run_file(cfg.out, CONFIG)} is damaged: {exc}") from None
    if parse_strategy(cfg.strategy).has(BAGGING.name):
        raise ConfigError(f"run {os.path.basename(cfg.out)} is a balanced-bagging run, which cannot be resumed; "
                          "start a new run")
    return cfg


def resume_config(run_dir: str, data_root: str) -> TrainConfig:
    """The GUI's resume: an interrupted run of the open dataset ``data_root`` with the settings it
    saved; RunError or ConfigError with one sentence when it cannot be continued here."""
    cfg = checked_for_resume(saved_settings(run_dir))
    if os.path.realpath(cfg.data) != os.path.realpath(data_root):
        raise RunError(f"run {os.path.basename(cfg.out)} was trained on another dataset ({cfg.data[:200]}); open "
                       "that one to resume it")
    return cfg


def can_resume(run_dir: str, data_root: str) -> bool:
    """Whether the GUI offers ``run_dir`` for resuming: a probe over untrusted files, so every
    refusal is a no."""
    try:
        resume_config(run_dir, data_root)
    except (RunError, ConfigError, OSError, ValueError, TypeError):
        return False
    return True
