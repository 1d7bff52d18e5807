"""What every command shares: the one-line user error, the argument parser that reports it,
argparse ``type=`` helpers, and the one progress renderer for engine event streams.

Training settings are judged by ``TrainConfig.validate`` (the GUI calls it too), so their options
only parse here (``number``, ``whole_number``); the helpers with ranges are for the options that
are no training setting (thresholds, fold and seed counts, top-k, ...).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any, Callable, Iterable, TextIO

from tqdm import tqdm

from balancelab.engine.core.eta import RunsEta, clock_text
from balancelab.engine.core.events import Failed, Finished, Progress, RunStep


class CliError(Exception):
    """A user-facing error: printed as one line on stderr, exit code 2. ``detail`` (an engine
    traceback, say) is printed only with ``--debug``."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def one_line(text: object) -> str:
    """``text`` on one printable line: newlines folded, undecodable bytes (surrogates) escaped."""
    flat = " ".join(str(text).split())
    return flat.encode("utf-8", "backslashreplace").decode("utf-8")


def printable(name: str) -> str:
    """A file or class name for a table line: control characters (a newline or tab in a name) shown
    as escapes, undecodable bytes as backslash escapes, so one name stays one line."""
    escaped = "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
                      for ch in name)
    return escaped.encode("utf-8", "backslashreplace").decode("utf-8")


def print_json(value: object) -> None:
    """Print one JSON document that is always valid UTF-8. A name holding bytes that are not UTF-8
    (kept by Python as surrogate escapes) is written as a ``\\udcXX`` escape instead of a raw
    byte; ``json.loads`` then ``os.fsencode`` give the exact bytes back."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, indent=2, ensure_ascii=True)
    print(text)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: ...)" to every option's help unless the help already says it in words
    (a computed default such as "up to 4") or the option is required; a flag is off by default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default:" in text or action.required or isinstance(action, argparse._HelpAction):
            return text
        if not action.option_strings:  # a command or a positional: it is given, or its help says what is used
            return text
        if action.nargs == 0:
            return f"{text} (default: off)"
        if action.default is None or action.default == [] or action.default == ():
            return f"{text} (default: none)"  # "None" is Python's word; the help says what none means
        if isinstance(action.default, (list, tuple)):  # "[1, 3, 5]" is Python's spelling
            return f"{text} (default: {','.join(map(str, action.default))})"
        return super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """argparse that shows every default in --help and raises CliError instead of printing usage
    and exiting, so a bad argument is one ``error:`` line like every other failure."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise CliError(f"{message} (see '{self.prog} --help')")


# --- argparse type= helpers --------------------------------------------------------------------

def number(text: str) -> float:
    """Any float; for training settings, whose range TrainConfig.validate judges."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number (got {text!r})") from None


def finite_number(text: str) -> float:
    value = number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number (got {text!r})")
    return value


def float_range(low: float, high: float) -> Callable[[str], float]:
    """A ``type=`` that accepts finite numbers in [low, high]."""

    def parse(text: str) -> float:
        value = finite_number(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a number from {low:g} to {high:g} (got {text!r})")
        return value

    parse.__name__ = f"float_range_{low:g}_{high:g}"
    return parse


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number (got {text!r})") from None


def int_between(low: int, high: int | None = None) -> Callable[[str], int]:
    """A ``type=`` that accepts whole numbers in [low, high] (no upper bound when high is None)."""
    rule = f"a whole number >= {low}" if high is None else f"a whole number from {low} to {high}"

    def parse(text: str) -> int:
        value = whole_number(text)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {rule} (got {text!r})")
        return value

    parse.__name__ = f"int_between_{low}_{high}"
    return parse


def device_name(text: str) -> str:
    """A device to run a trained model on: the same rule and sentence as training's --device."""
    from balancelab.engine.train.config import ConfigError
    from balancelab.engine.train.device import check_device

    try:
        check_device(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def run_folder(text: str) -> str:
    """An existing run folder (a file or a missing path is refused before anything loads)."""
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"run folder does not exist: {text}")
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"run folder is not a folder: {text}")
    return text


def output_folder(text: str) -> str:
    """A folder to write into: missing (it is created) or a folder, never an existing file."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"output folder is not a folder: {text}")
    return text


def check_argv(argv: Iterable[str]) -> None:
    """A NUL byte cannot be part of a path or a name: refuse it before anything parses."""
    for arg in argv:
        if "\0" in arg:
            raise CliError(f"argument {arg!r} contains a NUL byte")


# --- output ------------------------------------------------------------------------------------

def text_bar(count: int, largest: int, width: int = 40) -> str:
    return "█" * max(1 if count else 0, round(width * count / largest)) if largest else ""


class ProgressRenderer:
    """Renders any engine event stream on stderr: tqdm bars on a terminal; when stderr is not a
    terminal, one line per finished phase, epoch and run (never one per batch).

    Handles Progress, the training events (TrainStarted, BatchProgress, EpochEnd), RunStep
    (one run of a comparison or a cross-validation: an overall bar and per-run lines with an
    ETA), Finished and Failed (raised as CliError).
    """

    def __init__(self, stream: TextIO | None = None, interactive: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self._isatty(self.stream) if interactive is None else interactive
        self.bar: tqdm | None = None  # the current phase or epoch
        self.bar_key: str | None = None
        self.runs: tqdm | None = None  # RunStep: the runs of the whole task
        self.runs_eta = RunsEta()
        self.phase_started = time.monotonic()
        self.epochs = 0

    @staticmethod
    def _isatty(stream: TextIO) -> bool:
        try:
            return stream.isatty()
        except (AttributeError, ValueError):
            return False

    def consume(self, events: Iterable) -> Finished:
        """Render every event; return the Finished. A Failed becomes CliError (exit 2). The stream
        is run to its end, so the generator's own cleanup (``finally``) runs before we return."""
        finished = None
        try:
            for event in events:
                if isinstance(event, Failed):
                    raise CliError(event.message, event.detail)
                if isinstance(event, Finished):
                    finished = event
                elif finished is None:
                    self.render(event)
        finally:
            self.close()
        if finished is None:
            raise CliError("the work ended without a result")
        return finished

    def call(self, phase: str, work: Callable[[], Any]) -> Any:
        """Run synchronous engine work (no event stream) as one phase: a line when it is done."""
        self.render(Progress(phase, 0, 1))
        result = work()
        self.render(Progress(phase, 1, 1))
        self.close()
        return result

    def write(self, line: str) -> None:
        if self.interactive:
            tqdm.write(line, file=self.stream)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        for bar in (self.bar, self.runs):
            if bar is not None:
                bar.close()
        self.bar = self.runs = self.bar_key = None

    # --- one event --------------------------------------------------------------------------

    def render(self, event: object, prefix: str = "") -> None:
        from balancelab.engine.train.run_events import BatchProgress, EpochEnd, MemberStep, TrainStarted

        if isinstance(event, MemberStep):
            self._member_step(event, prefix)
        elif isinstance(event, RunStep):
            self._run_step(event)
        elif isinstance(event, Progress):
            self._progress(event, prefix)
        elif isinstance(event, TrainStarted):
            self.epochs = event.epochs
            self.write(f"{prefix}run folder: {event.run_dir}")
            self.write(f"{prefix}device: {event.device}  classes: {len(event.classes)}  train/val/test: "
                       f"{event.n_train}/{event.n_val}/{event.n_test}  skipped files: {event.skipped}")
            for name, why in event.excluded_classes.items():
                self.write(f"{prefix}warning: class '{name}' is not trained: {why}")
        elif isinstance(event, BatchProgress):
            if self.interactive:
                bar = self._bar(f"{prefix}epoch {event.epoch}/{self.epochs or '?'}", event.batches, "batch")
                bar.set_postfix_str(f"loss {event.loss:.4f}, {event.images_per_second:.0f} img/s", refresh=False)
                bar.update(event.batch - bar.n)
        elif isinstance(event, EpochEnd):
            self._end_bar()
            e = event.entry
            left = f", eta {clock_text(e['seconds'] * (self.epochs - event.epoch))}" if self.epochs > event.epoch else ""
            self.write(f"{prefix}epoch {event.epoch}/{self.epochs or '?'}: train_loss {e['train_loss']:.4f}  "
                       f"val_loss {e['val_loss']:.4f}  val_bal_acc {e['val_balanced_accuracy']:.4f}  "
                       f"{e['images_per_second']:.0f} img/s  ({clock_text(e['seconds'])}{left})"
                       f"{'  *best*' if event.is_best else ''}")

    def _run_step(self, step: RunStep) -> None:
        self.runs_eta.begin()
        if self.interactive and self.runs is None:
            self.runs = tqdm(total=step.total, desc="runs", unit="run", file=self.stream, position=0, dynamic_ncols=True)
            self.runs.update(step.index)
        inner = step.event
        if isinstance(inner, Failed):
            raise CliError(f"{step.label}: {inner.message}", inner.detail)
        if not isinstance(inner, Finished):
            self.render(inner, f"[{step.index + 1}/{step.total} {step.label}] ")
            return
        self._end_bar()
        done = step.index + 1
        self.runs_eta.run_finished(step.index)
        if self.runs is not None:
            self.runs.update(done - self.runs.n)
        else:
            self.write(f"run {done}/{step.total} done ({step.label}): elapsed {clock_text(self.runs_eta.elapsed)}, "
                       f"eta {clock_text(self.runs_eta.left(step.total) or 0.0)}")

    def _member_step(self, step, prefix: str) -> None:
        """One member of an ensemble being trained: its events prefixed, a line when it is done."""
        label = f"{prefix}[member {step.index + 1}/{step.total}] "
        if isinstance(step.event, Finished):
            self._end_bar()
            m = step.event.result.metrics
            self.write(f"{label}done: balanced accuracy {m['balanced_accuracy']:.4f} on {m['evaluated_on']}")
        else:
            self.render(step.event, label)

    def _progress(self, event: Progress, prefix: str) -> None:
        key = prefix + event.phase
        if self.interactive:
            bar = self._bar(key, event.total or None, "it")
            if event.message:
                bar.set_postfix_str(event.message, refresh=False)
            bar.update(max(0, event.done - bar.n))
            if event.total and event.done >= event.total:
                self._end_bar()
            return
        if key != self.bar_key:
            self.bar_key, self.phase_started = key, time.monotonic()
        elapsed = time.monotonic() - self.phase_started
        if event.total and event.done >= event.total:
            self.write(f"{key}: {event.done}/{event.total} in {clock_text(elapsed)}")
            self.bar_key = None
        elif event.message and event.done > 0:  # a named step inside a phase, e.g. "fold 2/5"
            eta = elapsed / event.done * (event.total - event.done) if event.total else 0.0
            self.write(f"{key}: {event.message} ({event.done}/{event.total} done, eta {clock_text(eta)})")

    def _bar(self, key: str, total: int | None, unit: str) -> tqdm:
        if self.bar is None or self.bar_key != key:
            self._end_bar()
            self.bar = tqdm(total=total, desc=key, unit=unit, file=self.stream, leave=False, dynamic_ncols=True,
                            position=1 if self.runs is not None else 0)
            self.bar_key = key
        return self.bar

    def _end_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None
        if self.interactive:
            self.bar_key = None
