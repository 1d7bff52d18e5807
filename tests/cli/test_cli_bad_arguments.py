"""Every bad command line: exit 2, exactly one ``error:`` line on stderr, nothing on stdout, never
a traceback. In-process through ``main(argv)``; a few through a real ``main.py`` subprocess."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from balancelab.engine.cli.main import main
from balancelab.engine.train.config import ConfigError, TrainConfig

ROOT = Path(__file__).resolve().parents[2]

TRAIN = ["train", "--data", "{data}", "--out", "{tmp}/run", "--model", "tiny-2conv", "--epochs", "1"]
COMPARE = ["compare", "--data", "{data}", "--out", "{tmp}/cmp", "--strategies", "none", "--seeds", "1", "--epochs", "1"]
LABEL = ["label-issues", "--data", "{data}", "--out", "{tmp}/li", "--folds", "2", "--epochs", "1"]
EVALUATE = ["evaluate", "--run", "{run}", "--data", "{data}"]
PREDICT = ["predict", "--run", "{run}", "{image}"]

BAD = {
    # training settings: judged by TrainConfig.validate
    "weight decay nan": TRAIN + ["--weight-decay", "nan"],
    "weight decay negative": TRAIN + ["--weight-decay", "-0.1"],
    "lr nan": TRAIN + ["--lr", "nan"],
    "lr inf": TRAIN + ["--lr", "inf"],
    "lr zero": TRAIN + ["--lr", "0"],
    "lr text": TRAIN + ["--lr", "fast"],
    "momentum nan": TRAIN + ["--momentum", "nan"],
    "momentum one": TRAIN + ["--momentum", "1"],
    "label smoothing nan": TRAIN + ["--label-smoothing", "nan"],
    "label smoothing one": TRAIN + ["--label-smoothing", "1"],
    "ema decay one": TRAIN + ["--ema-decay", "1"],
    "ema decay negative": TRAIN + ["--ema-decay", "-0.5"],
    "mixup alpha nan": TRAIN + ["--mixup-alpha", "nan"],
    "mixup alpha zero": TRAIN + ["--mixup-alpha", "0"],
    "cutmix alpha negative": TRAIN + ["--cutmix-alpha", "-1"],
    "cutmix alpha inf": TRAIN + ["--cutmix-alpha", "inf"],
    "beta one": TRAIN + ["--beta", "1"],
    "beta nan": TRAIN + ["--beta", "nan"],
    "focal gamma negative": TRAIN + ["--focal-gamma", "-1"],
    "focal gamma inf": TRAIN + ["--focal-gamma", "inf"],
    "val fraction nan": TRAIN + ["--val-fraction", "nan"],
    "val fraction zero": TRAIN + ["--val-fraction", "0"],
    "step gamma zero": TRAIN + ["--step-gamma", "0"],
    "sampling strategy nan": TRAIN + ["--strategy", "oversample", "--sampling-strategy", "nan"],
    "sampling strategy 2": TRAIN + ["--strategy", "oversample", "--sampling-strategy", "2"],
    "sampling strategy name": TRAIN + ["--strategy", "oversample", "--sampling-strategy", "majority"],
    "device meta": TRAIN + ["--device", "meta"],
    "device unknown": TRAIN + ["--device", "quantum"],
    "device gpu 99": TRAIN + ["--device", "cuda:99"],
    "device cpu 3": TRAIN + ["--device", "cpu:3"],
    "image size 1": TRAIN + ["--image-size", "1"],
    "image size below alexnet-style": TRAIN[:-4] + ["--model", "alexnet-style", "--epochs", "1", "--image-size", "12"],
    "image size negative": TRAIN + ["--image-size", "-5"],
    "epochs 0": TRAIN[:-2] + ["--epochs", "0"],
    "epochs negative": TRAIN[:-2] + ["--epochs", "-3"],
    "epochs text": TRAIN[:-2] + ["--epochs", "ten"],
    "batch size negative": TRAIN + ["--batch-size", "-4"],
    "batch size 0": TRAIN + ["--batch-size", "0"],
    "workers negative": TRAIN + ["--workers", "-1"],
    "warmup negative": TRAIN + ["--warmup-epochs", "-1"],
    "early stopping negative": TRAIN + ["--early-stopping", "-2"],
    "seed negative": TRAIN + ["--seed", "-1"],
    "unknown model": TRAIN[:-4] + ["--model", "resnet9000", "--epochs", "1"],
    "unknown strategy": TRAIN + ["--strategy", "magic"],
    "strategy twice": TRAIN + ["--strategy", "focal+focal"],
    "unknown optimizer": TRAIN + ["--optimizer", "lion"],
    "pretrained small net": TRAIN + ["--pretrained", "imagenet"],
    "data is a file": ["train", "--data", "{file}", "--out", "{tmp}/run"],
    "data missing": ["train", "--data", "{tmp}/missing", "--out", "{tmp}/run"],
    "out is a file": ["train", "--data", "{data}", "--out", "{file}"],
    "missing --out": ["train", "--data", "{data}"],
    # NUL bytes (only possible in-process: execve refuses them)
    "NUL in a path": ["scan", "{data}\0x"],
    "NUL in a label": TRAIN + ["--strategy", "no\0ne"],
    "NUL in an image path": ["predict", "--run", "{run}", "{image}\0.png"],
    # data commands
    "scan a file": ["scan", "{file}"],
    "scan an empty path": ["scan", ""],
    "scan missing": ["scan", "{tmp}/missing"],
    "scan workers 0": ["scan", "{data}", "--workers", "0"],
    "duplicates threshold negative": ["duplicates", "{data}", "--threshold", "-1"],
    "duplicates threshold huge": ["duplicates", "{data}", "--threshold", "100000"],
    "duplicates missing": ["duplicates", "{tmp}/missing"],
    # using a run
    "evaluate tau nan": EVALUATE + ["--posthoc-tau", "nan"],
    "evaluate tau inf": EVALUATE + ["--posthoc-tau", "inf"],
    "evaluate tau negative": EVALUATE + ["--posthoc-tau", "-1"],
    "evaluate run is a file": ["evaluate", "--run", "{file}", "--data", "{data}"],
    "evaluate run missing": ["evaluate", "--run", "{tmp}/nope", "--data", "{data}"],
    "evaluate device meta": EVALUATE + ["--device", "meta"],
    "evaluate unknown split": EVALUATE + ["--split", "holdout"],
    "evaluate data missing": ["evaluate", "--run", "{run}", "--data", "{tmp}/missing"],
    "evaluate run folder without checkpoint": ["evaluate", "--run", "{tmp}", "--data", "{data}"],
    "predict tau nan": PREDICT + ["--posthoc-tau", "nan"],
    "predict top-k 0": PREDICT + ["--top-k", "0"],
    "predict run is a file": ["predict", "--run", "{file}", "{image}"],
    "predict device meta": PREDICT + ["--device", "meta"],
    # experiments
    "compare seeds 0": COMPARE[:-4] + ["--seeds", "0", "--epochs", "1"],
    "compare seeds negative": COMPARE[:-4] + ["--seeds", "-2", "--epochs", "1"],
    "compare no strategy": ["compare", "--data", "{data}", "--out", "{tmp}/cmp", "--strategies", " , "],
    "compare unknown strategy": ["compare", "--data", "{data}", "--out", "{tmp}/cmp", "--strategies", "none,magic"],
    "compare strategy twice": ["compare", "--data", "{data}", "--out", "{tmp}/cmp", "--strategies", "none,none"],
    "compare epochs 0": COMPARE[:-2] + ["--epochs", "0"],
    "compare lr nan": COMPARE + ["--lr", "nan"],
    "compare device meta": COMPARE + ["--device", "meta"],
    "compare unknown model": COMPARE + ["--model", "nope"],
    "compare out is a file": ["compare", "--data", "{data}", "--out", "{file}", "--strategies", "none"],
    "compare out holds the user's files": COMPARE[:4] + ["{tmp}"] + COMPARE[5:],
    "compare out is the dataset": COMPARE[:4] + ["{data}"] + COMPARE[5:],
    "export data missing": ["export", "--run", "{run}", "--format", "torchscript", "--out", "{tmp}/m.pt",
                            "--data", "{tmp}/missing"],
    "export the balanced dataset into the dataset": ["export", "--run", "{run}", "--format", "dataset",
                                                     "--data", "{data}", "--out", "{data}/copy"],
    "label-issues folds 1": LABEL[:-4] + ["--folds", "1", "--epochs", "1"],
    "label-issues folds over the smallest class": LABEL[:-4] + ["--folds", "11", "--epochs", "1"],
    "label-issues epochs 0": LABEL[:-2] + ["--epochs", "0"],
    "label-issues batch size negative": LABEL + ["--batch-size", "-1"],
    "label-issues unknown model": LABEL + ["--model", "nope"],
    "label-issues show negative": LABEL + ["--show", "-1"],
    "label-issues out is a file": ["label-issues", "--data", "{data}", "--out", "{file}"],
    "label-issues data missing": ["label-issues", "--data", "{tmp}/missing", "--out", "{tmp}/li"],
    # the parser itself
    "unknown command": ["fly"],
    "unknown option": ["scan", "{data}", "--colour"],
}


@pytest.fixture
def places(demo_root, tiny_run, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    image = next(Path(demo_root, "test").rglob("*.png"))
    single = tmp_path / "single" / "only class"
    single.mkdir(parents=True)
    for i, png in enumerate(sorted(Path(demo_root, "train").rglob("*.png"))[:12]):
        (single / f"{i}.png").write_bytes(png.read_bytes())
    return {"data": str(demo_root), "run": str(tiny_run), "tmp": str(tmp_path), "file": str(a_file), "image": str(image),
            "single": str(single.parent)}


def run_in_process(argv: list[str], places: dict, capsys) -> tuple[int, str, str]:
    code = main([a.format(**places) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv", BAD.values(), ids=BAD.keys())
def test_bad_argument_is_one_line_and_exit_2(argv, places, capsys):
    code, out, err = run_in_process(argv, places, capsys)
    assert "Traceback" not in err
    assert code == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err


@pytest.mark.parametrize("option, field, value", [
    ("--weight-decay", "weight_decay", "nan"), ("--device", "device", "meta"), ("--image-size", "image_size", "1"),
    ("--epochs", "epochs", "0"), ("--strategy", "strategy", "magic"), ("--val-fraction", "val_fraction", "inf"),
])
def test_cli_and_gui_refuse_with_the_same_sentence(option, field, value, places, capsys):
    """The GUI calls TrainConfig.validate; the CLI must print exactly its sentence."""
    typed = {"weight_decay": float, "val_fraction": float, "image_size": int, "epochs": int}.get(field, str)(value)
    cfg = TrainConfig(data=places["data"], out=places["tmp"] + "/run", model="tiny-2conv", **{field: typed})
    with pytest.raises(ConfigError) as refused:
        cfg.validate()
    code, _, err = run_in_process(TRAIN + [option, value], places, capsys)
    assert code == 2 and err == f"error: {refused.value}\n"


def test_config_read_back_with_wrong_types_is_refused(places):
    """config.json is untrusted: types are checked, not only ranges."""
    for bad in ({"epochs": "3"}, {"lr": [1]}, {"amp": "yes"}, {"seed": True}, {"weight_decay": math.nan}, {"extra": []}):
        cfg = TrainConfig.from_dict({"data": places["data"], "out": places["tmp"], **bad})
        with pytest.raises(ConfigError):
            cfg.validate()


def test_good_settings_still_pass(places):
    TrainConfig(data=places["data"], out=places["tmp"] + "/run", strategy="oversample", sampling_strategy="0.5",
                optimizer="sgd", momentum=0.0, weight_decay=1e-4, mixup_alpha=0.4, image_size=32).validate()
    TrainConfig(data=places["data"], out=places["tmp"] + "/run", strategy="undersample",
                sampling_strategy="not minority").validate()


@pytest.mark.parametrize("args", [
    ["train", "--data", "{data}", "--out", "{tmp}/run", "--weight-decay", "nan"],
    ["train", "--data", "{data}", "--out", "{tmp}/run", "--device", "meta"],
    ["duplicates", "{data}", "--threshold", "-1"],
    ["fly"],
])
def test_bad_argument_through_main_py(args, places):
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), *[a.format(**places) for a in args]],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: ")


def test_unexpected_error_is_one_line_exit_1(monkeypatch, places, capsys):
    """A bug still prints one line (the traceback only with --debug)."""
    from balancelab.engine.cli import training_commands

    def broken(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(training_commands, "cmd_models", broken)
    code, out, err = run_in_process(["models"], places, capsys)
    assert code == 1 and err.count("\n") == 1 and "boom second line" in err and "Traceback" not in err
    code, out, err = run_in_process(["--debug", "models"], places, capsys)
    assert code == 1 and "Traceback" in err


def test_device_rule_on_a_one_gpu_machine(monkeypatch):
    """Simulated CUDA with one GPU: cuda and cuda:0 pass, cuda:1 is refused by name; meta never passes."""
    import torch

    from balancelab.engine.train.device import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_device("cuda")
    check_device("cuda:0")
    check_device("auto")
    with pytest.raises(ConfigError, match="there is no GPU 1"):
        check_device("cuda:1")
    for name in ("meta", "xpu", "", "cuda:-1", None, 3):
        with pytest.raises(ConfigError):
            check_device(name)


REFUSED_AFTER_WORK = {  # progress lines (stderr) or per-image results (stdout) come first; the refusal is last
    "compare a single-class dataset": (["compare", "--data", "{single}", "--out", "{tmp}/cmp", "--strategies", "none",
                                        "--seeds", "1", "--epochs", "1", "--model", "tiny-2conv"], "2 classes"),
    "label-issues a single-class dataset": (["label-issues", "--data", "{single}", "--out", "{tmp}/li", "--folds", "2",
                                             "--epochs", "1"], "2 classes"),
    "predict only unreadable images": (["predict", "--run", "{run}", "{tmp}/nope.png", "{file}"], "none of the 2"),
}


@pytest.mark.parametrize("argv, words", REFUSED_AFTER_WORK.values(), ids=REFUSED_AFTER_WORK.keys())
def test_bad_input_found_while_working_is_exit_2(argv, words, places, capsys):
    code, out, err = run_in_process(argv, places, capsys)
    assert code == 2 and "Traceback" not in err and "unexpected" not in err
    assert err.splitlines()[-1].startswith("error: ") and words in err.splitlines()[-1]


DEEP = b"[" * 100_000 + b"]" * 100_000


def _crafted_checkpoint(run: Path, change) -> None:
    import torch

    state = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    change(state)
    torch.save(state, run / "best.pt")


CRAFTED_RUNS = {  # name: (how the copied run is damaged, commands that must refuse it with exit 2)
    # (with metrics.json a damaged marker is a finished run's, and it is read: test_run_folder)
    "deeply nested marker": (lambda run: ((run / ".balancelab-run").write_bytes(DEEP), (run / "metrics.json").unlink()),
                             ("evaluate", "report")),
    "deeply nested metrics.json": (lambda run: (run / "metrics.json").write_bytes(DEEP), ("report",)),
    "deeply nested config.json": (lambda run: (run / "config.json").write_bytes(DEEP), ("report",)),
    "deeply nested split.json": (lambda run: (run / "split.json").write_bytes(DEEP), ("evaluate-val",)),
    "checkpoint classes are one string": (
        lambda run: _crafted_checkpoint(run, lambda s: s.update(classes="".join(s["classes"]))), ("evaluate",)),
    "checkpoint classes are numbers": (
        lambda run: _crafted_checkpoint(run, lambda s: s.update(classes=list(range(len(s["classes"]))))), ("evaluate",)),
    "checkpoint mean is text": (lambda run: _crafted_checkpoint(run, lambda s: s.update(mean="x")), ("evaluate",)),
    "checkpoint weights are NaN": (lambda run: _crafted_checkpoint(
        run, lambda s: [t.fill_(float("nan")) for t in s["model"].values() if t.is_floating_point()]), ("evaluate",)),
}


@pytest.mark.parametrize("name", CRAFTED_RUNS)
def test_a_crafted_run_folder_is_refused_with_exit_2(name, places, tmp_path, capsys):
    import shutil

    damage, commands = CRAFTED_RUNS[name]
    run = tmp_path / "crafted-run"
    shutil.copytree(places["run"], run)
    damage(run)
    argvs = {
        "evaluate": ["evaluate", "--run", str(run), "--data", places["data"], "--posthoc-tau", "1", "--tau-norm", "1"],
        "evaluate-val": ["evaluate", "--run", str(run), "--data", places["data"], "--split", "val"],
        "report": ["export", "--run", str(run), "--format", "report", "--out", str(tmp_path / "r.html")],
    }
    for command in commands:
        code, out, err = run_in_process(argvs[command], places, capsys)
        assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, (command, code, err)
        assert "weights_only=False" not in err and "Traceback" not in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11/Wayland are how Linux offers a display")
def test_the_app_without_a_display_is_one_line_and_exit_2():
    """Qt printed six lines about the xcb plugin and aborted (exit 134, SIGABRT)."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run([sys.executable, str(ROOT / "main.py")], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: no display")
