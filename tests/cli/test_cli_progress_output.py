"""The one progress renderer (stderr only; one line per phase/epoch/run when piped, tqdm bars on a
terminal), machine-readable stdout for --json, and defaults in --help that come from TrainConfig."""
from __future__ import annotations

import argparse
import io
import json
import re

import pytest

from balancelab.engine.cli.common import CliError, ProgressRenderer
from balancelab.engine.cli.main import build_parser, main
from balancelab.engine.core.events import Failed, Finished, Progress, RunStep
from balancelab.engine.experiments.label_ranking import LABEL_ISSUE_BATCH, LABEL_ISSUE_EPOCHS, LABEL_ISSUE_LR, LABEL_ISSUE_MODEL
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.train.run_events import BatchProgress, EpochEnd, TrainStarted


def test_piped_train_prints_one_line_per_epoch(demo_root, tmp_path, capsys):
    code = main(["train", "--data", str(demo_root), "--out", str(tmp_path / "run"), "--model", "tiny-2conv",
                 "--epochs", "2", "--augment", "none", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = err.splitlines()
    epochs = [line for line in lines if re.match(r"epoch \d+/2: train_loss", line)]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert "\r" not in err  # no redrawn bar when stderr is not a terminal
    assert len(lines) <= 12, err  # phases and epochs, never a line per batch
    assert any(line.startswith("first look: ") for line in lines) and any(line.startswith("deep check: ") for line in lines)
    assert "Evaluated on:" in out  # progress on stderr, results on stdout ...
    assert not any(re.match(r"(epoch \d+/\d+|first look|deep check|decoding)", line) for line in out.splitlines())
    assert re.search(r"^kept epoch [12] of 2", out, re.M)  # ... the epoch best.pt holds among the results


def _epoch_events(epochs: int = 2, batches: int = 5):
    yield TrainStarted("/runs/x", "cpu", ["a", "b"], [5, 1], [5.0, 1.0], 6, 2, 0, epochs, batches)
    for e in range(1, epochs + 1):
        for b in range(1, batches + 1):
            yield BatchProgress(e, b, batches, 0.5, 100.0, 1.0)
        yield EpochEnd(e, {"train_loss": 0.5, "val_loss": 0.4, "val_balanced_accuracy": 0.7, "images_per_second": 100.0,
                           "seconds": 1.5}, e == 1)


def test_renderer_piped_lines_per_run_with_eta():
    def events():
        yield Progress("verifying", 0, 10)
        yield Progress("verifying", 10, 10)
        for i in range(2):
            for ev in _epoch_events():
                yield RunStep(f"focal seed {i}", i, 2, ev)
            yield RunStep(f"focal seed {i}", i, 2, Finished(None))
        yield Finished({"ok": True})

    stream = io.StringIO()
    finished = ProgressRenderer(stream, interactive=False).consume(events())
    assert finished.result == {"ok": True}
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("verifying: 10/10")
    assert sum("epoch 1/2:" in line for line in lines) == 2 and sum("epoch 2/2:" in line for line in lines) == 2
    assert "[1/2 focal seed 0] epoch 1/2:" in stream.getvalue() and "eta" in stream.getvalue()
    runs = [line for line in lines if line.startswith("run ")]
    assert len(runs) == 2 and runs[0].startswith("run 1/2 done (focal seed 0)") and "eta" in runs[0]
    assert len(lines) == 1 + 2 * (2 + 2) + 2  # phase, per run: started (2 lines) + 2 epochs, run lines


def test_renderer_piped_named_steps_get_an_eta():
    """label-issues reports folds as a Progress phase with a message per fold."""
    events = [Progress("cross-validation", f, 3, f"fold {f + 1}/3") for f in range(3)]
    stream = io.StringIO()
    ProgressRenderer(stream, interactive=False).consume([*events, Progress("cross-validation", 3, 3), Finished(1)])
    lines = stream.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["cross-validation: fold 2/3", "cross-validation: fold 3/3",
                                                        "cross-validation: 3/3 in 00:00"]
    assert "eta" in lines[0]


def test_renderer_draws_tqdm_bars_on_a_terminal():
    stream = io.StringIO()
    ProgressRenderer(stream, interactive=True).consume([*(RunStep("none seed 0", 0, 1, ev) for ev in _epoch_events()),
                                                        RunStep("none seed 0", 0, 1, Finished(None)), Finished(0)])
    text = stream.getvalue()
    assert "\r" in text and "batch" in text and "runs" in text  # redrawn bars: epoch and runs
    assert "epoch 2/2: train_loss 0.5000" in text


def test_renderer_turns_failed_into_one_line_error():
    with pytest.raises(CliError, match="^disk full$"):
        ProgressRenderer(io.StringIO(), interactive=False).consume([Progress("x", 0, 2), Failed("disk full", "Traceback...")])
    with pytest.raises(CliError, match="^focal seed 1: bad$"):
        ProgressRenderer(io.StringIO(), interactive=False).consume([RunStep("focal seed 1", 1, 2, Failed("bad"))])


def _json_stdout(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_json_stdout_is_only_json(demo_root, tiny_run, tmp_path, capsys):
    image = next((demo_root / "test").rglob("*.png"))
    assert _json_stdout(["scan", str(demo_root), "--json"], capsys)["total_images"] > 0
    assert "balanced_accuracy" in _json_stdout(["evaluate", "--run", str(tiny_run), "--data", str(demo_root), "--json"], capsys)
    predicted = _json_stdout(["predict", "--run", str(tiny_run), str(image), "--json"], capsys)
    assert predicted[0]["top"] and predicted[0]["path"] == str(image)
    compared = _json_stdout(["compare", "--data", str(demo_root), "--out", str(tmp_path / "cmp"), "--strategies", "none",
                             "--seeds", "1", "--epochs", "1", "--model", "tiny-2conv", "--augment", "none",
                             "--device", "cpu", "--json"], capsys)
    assert [r["strategy"] for r in compared["summary"]] == ["none"]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_help_shows_every_default():
    for name, sub in _subparsers(build_parser()).items():
        text = " ".join(sub.format_help().split())
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction) or action.required or not (action.option_strings or action.nargs == "?"):
                continue
            assert action.help, f"{name} {action.option_strings} has no help"
            help_text = " ".join(sub._get_formatter()._expand_help(action).split())
            shown = sub.formatter_class(name)._get_help_string(action)
            assert "(default:" in shown, f"{name} {action.option_strings or action.dest}: {shown}"
            assert help_text in text


def test_training_defaults_come_from_train_config():
    defaults = TrainConfig(data="", out="")
    subs = _subparsers(build_parser())
    for name in ("train", "compare", "label-issues"):
        for action in subs[name]._actions:
            if not hasattr(defaults, action.dest) or action.dest in ("data", "out", "seed", "split_seed"):
                continue
            expected = getattr(defaults, action.dest)
            if name == "label-issues":
                expected = {"model": LABEL_ISSUE_MODEL, "epochs": LABEL_ISSUE_EPOCHS, "lr": LABEL_ISSUE_LR,
                            "batch_size": LABEL_ISSUE_BATCH}.get(action.dest, expected)  # measured for cross-validation
            assert action.default == expected, f"{name} --{action.dest}"
    train_seed = next(a for a in subs["train"]._actions if a.dest == "seed")
    assert train_seed.default == defaults.seed
