"""Crafted or damaged checkpoints: every field a reader uses is checked when the checkpoint is
loaded, so evaluate, predict, ensembles, kNN and exports refuse it in one line (exit 2) instead
of a KeyError, a NaN metric or a model of many gigabytes."""
from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from balancelab.engine.core.events import Finished
from balancelab.engine.results import inference
from balancelab.engine.results.inference import load_run_model, predict_paths
from balancelab.engine.train.checkpoints import CheckpointError, load_checkpoint
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.train.run_folder import RunError
from balancelab.engine.train.run import train
from tests.hostile import write_png

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ck") / "data"
    for c in ("a", "b", "c"):
        for i in range(8):
            write_png(root / c / f"{i}.png", seed=ord(c) * 100 + i)
    return root


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ck") / "run"
    cfg = TrainConfig(data=str(data), out=str(out), model="tiny-2conv", epochs=1, image_size=16, batch_size=8, seed=0)
    assert isinstance(list(train(cfg))[-1], Finished)
    return out


def crafted(run: Path, tmp_path: Path, change) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    state = torch.load(copy / "best.pt", weights_only=True)
    change(state)
    torch.save(state, copy / "best.pt")
    return copy


def setter(key, value):
    return lambda state: state.__setitem__(key, value)


DAMAGE = {
    "classes None": (setter("classes", None), "classes"),
    "classes with a slash": (lambda s: s.__setitem__("classes", ["a", "b/..", "c"]), "classes"),
    "in_channels None": (setter("in_channels", None), "in_channels"),
    "in_channels 7": (setter("in_channels", 7), "in_channels"),
    "image_size text": (setter("image_size", "16"), "image_size"),
    "image_size a float": (setter("image_size", 16.0), "image_size"),
    "image_size a tensor": (setter("image_size", torch.tensor(16)), "image_size"),
    "image_size 10**9": (setter("image_size", 10**9), "image_size"),
    "mean text": (setter("mean", "x"), "mean"),
    "std zero": (setter("std", [0.0]), "std"),
    "std NaN": (setter("std", [math.nan]), "std"),
    "log_prior text": (setter("log_prior", ["a", "b", "c"]), "log_prior"),
    "log_prior short": (setter("log_prior", [0.0]), "log_prior"),
    "log_prior NaN": (setter("log_prior", [math.nan] * 3), "log_prior"),
    "train_counts negative": (setter("train_counts", [-1, 2, 3]), "train_counts"),
    "weights text": (setter("model", "weights"), "weights"),
    "a weight that is text": (lambda s: s["model"].__setitem__("net.0.weight", "x"), "weights"),
    "model_name a list": (setter("model_name", ["tiny-2conv"]), "model_name"),
    "strategy a list": (setter("strategy", ["none"]), "strategy"),
    "deskew text": (setter("deskew", "yes"), "deskew"),
}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_each_damaged_field_is_named_in_one_line(run, tmp_path, name):
    change, field = DAMAGE[name]
    copy = crafted(run, tmp_path, change)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(str(copy / "best.pt"))
    message = str(info.value)
    assert field in message and "damaged" in message and "\n" not in message


def test_a_missing_or_null_prior_is_dropped_and_ensembles_fall_back_to_uniform(run, data, tmp_path):
    copy = crafted(run, tmp_path, lambda s: (s.pop("log_prior"), s.__setitem__("train_counts", None)))
    state = load_checkpoint(str(copy / "best.pt"))
    assert "log_prior" not in state and "train_counts" not in state
    assert predict_paths(str(copy), [str(data / "a" / "0.png")])[0]["top"]
    with pytest.raises(RunError, match="nothing to subtract"):  # was: τ reported as applied, a uniform prior used
        predict_paths(str(copy), [str(data / "a" / "0.png")], posthoc_tau=1.0)
    out = tmp_path / "ens"
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "ensemble", "--runs", f"{copy},{run}", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr  # was: unexpected KeyError: 'log_prior'
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "evaluate", "--run", str(out), "--data", str(data),
                           "--posthoc-tau", "1"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_a_crafted_image_size_is_refused_before_a_real_model_is_built(run, tmp_path, monkeypatch):
    """4096 px makes tiny-2conv's linear layer 335 million weights (mnist-classic's: 8.6 billion,
    34 GB): the shapes are compared on the meta device first, so nothing that size is allocated."""
    copy = crafted(run, tmp_path, setter("image_size", 4096))
    devices = []
    real_build = inference.build_model

    def build_model(*args, **kwargs):
        model = real_build(*args, **kwargs)
        devices.append(next(model.parameters()).device.type)
        return model

    monkeypatch.setattr(inference, "build_model", build_model)
    with pytest.raises(CheckpointError, match="does not match its architecture"):
        load_run_model(str(copy))
    assert devices == ["meta"]


def test_finite_but_huge_weights_are_refused_not_scored_as_nan(run, data, tmp_path):
    def huge(state):
        for key, value in state["model"].items():
            if value.is_floating_point() and key.endswith("weight"):
                value.fill_(1e38)

    copy = crafted(run, tmp_path, huge)
    for argv in (["evaluate", "--run", str(copy), "--data", str(data)],
                 ["predict", "--run", str(copy), str(data / "a" / "0.png")],
                 ["knn", "--data", str(data), "--features-from", str(copy)]):
        proc = subprocess.run([sys.executable, str(ROOT / "main.py"), *argv], capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 2 and "not numbers" in proc.stderr and len(proc.stderr.strip().splitlines()) <= 3, \
            (argv, proc.stderr)


def test_garbage_in_place_of_a_checkpoint_is_corrupt_not_a_bug(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    whole = (run / "best.pt").read_bytes()
    for content in (b"hello world\n" * 10, bytes(range(256)) * 4, whole[:len(whole) // 2]):
        (copy / "best.pt").write_bytes(content)
        with pytest.raises(CheckpointError, match="truncated or corrupt|not a plain weights file") as info:
            load_checkpoint(str(copy / "best.pt"))
        assert "If you are seeing" not in str(info.value)  # torch's advice to its developers is cut off


def test_a_report_of_a_run_whose_model_will_not_load_says_so(run, tmp_path):
    """The report needs only metrics.json, so it is written; but a damaged best.pt is named on
    stderr and in the page, not found later by the first evaluate or export."""
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "best.pt").write_bytes(b"\x00" * 100)
    out = tmp_path / "r.html"
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "export", "--run", str(copy), "--format", "report",
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert proc.returncode == 0 and len(warnings) == 1 and "model cannot be used" in warnings[0]
    assert "best.pt" in warnings[0] and "Warnings" in out.read_text()


def cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, argv)], capture_output=True, text=True,
                          cwd=ROOT)


def huge_weights(state):
    for key, value in state["model"].items():
        if value.is_floating_point() and key.endswith("weight"):
            value.fill_(1e38)


@pytest.mark.parametrize("kind", ["torchscript", "onnx"])
def test_a_model_whose_outputs_are_nan_is_not_exported(run, data, tmp_path, kind):
    """It was written, and its reload check "passed": NaN differences compare as nothing."""
    copy = crafted(run, tmp_path, huge_weights)
    proc = cli("export", "--run", copy, "--format", kind, "--data", data, "--out", tmp_path / "m.out")
    assert proc.returncode == 2 and "not numbers" in proc.stderr and not (tmp_path / "m.out").exists()


@pytest.mark.parametrize("damage", ["nan weights", "huge weights", "unknown model"])
def test_an_ensemble_of_a_member_whose_model_cannot_be_used_is_refused_before_writing(run, tmp_path, damage):
    change = {"nan weights": lambda s: next(v for v in s["model"].values() if v.is_floating_point()).fill_(math.nan),
              "huge weights": huge_weights, "unknown model": setter("model_name", "resnet9000")}[damage]
    copy = crafted(run, tmp_path, change)
    proc = cli("ensemble", "--runs", f"{copy},{run}", "--out", tmp_path / "ens")
    assert proc.returncode == 2 and not (tmp_path / "ens").exists(), proc.stderr  # was: a "complete" ensemble


def test_a_checkpoint_that_is_a_link_or_names_other_classes_is_refused(run, tmp_path):
    linked = tmp_path / "linked"
    shutil.copytree(run, linked)
    (linked / "best.pt").unlink()
    (linked / "best.pt").symlink_to(run / "best.pt")  # a valid checkpoint, outside the run folder
    with pytest.raises(CheckpointError, match="symbolic link"):
        load_run_model(str(linked))
    permuted = crafted(run, tmp_path, lambda s: s["classes"].reverse())  # every prediction under the wrong name
    with pytest.raises(CheckpointError, match="other classes than its metrics.json"):
        load_run_model(str(permuted))


def test_complex_weights_and_torch_notes_never_reach_the_user(run, data, tmp_path):
    copy = crafted(run, tmp_path, lambda s: s["model"].__setitem__(
        "net.0.weight" if "net.0.weight" in s["model"] else next(iter(s["model"])),
        next(iter(s["model"].values())).to(torch.complex64)))
    with pytest.raises(CheckpointError, match="complex"):
        load_checkpoint(str(copy / "best.pt"))
    import pickle
    with open(copy / "best.pt", "wb") as fh:  # a raw protocol-4 pickle: torch warns about it on stderr
        pickle.dump(5, fh, protocol=4)
    proc = cli("evaluate", "--run", copy, "--data", data)
    assert proc.returncode == 2 and "Warning" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.strip()][-1].startswith("error:")
    assert len([line for line in proc.stderr.splitlines() if "error" in line.lower()]) == 1


def test_a_class_folder_named_with_a_newline_prints_on_one_line(tmp_path):
    """Folder names may hold a newline; printed raw, one could forge an 'error:' line on stdout."""
    data = tmp_path / "data"
    for c in ("a", "b\nerror: forged"):
        for i in range(8):
            write_png(data / c / f"{i}.png", seed=len(c) * 100 + i)
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(data), out=str(out), model="tiny-2conv", epochs=1, image_size=16, batch_size=8, seed=0)
    assert isinstance(list(train(cfg))[-1], Finished)
    proc = cli("predict", "--run", out, "--top-k", "2", data / "a" / "0.png")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1 and "b\\nerror: forged" in proc.stdout
    proc = cli("evaluate", "--run", out, "--data", data)
    assert proc.returncode == 0 and not any(line.startswith("error") for line in proc.stdout.splitlines())


def test_a_member_damaged_after_the_ensemble_was_built_is_named(run, data, tmp_path):
    """Its weights overflow to NaN only when run: the message named the ensemble's "checkpoint",
    which an ensemble does not have, instead of the member to rebuild."""
    other = crafted(run, tmp_path, lambda s: None)
    proc = cli("ensemble", "--runs", f"{run},{other}", "--out", tmp_path / "ens")
    assert proc.returncode == 0, proc.stderr
    member = next(p for p in sorted((tmp_path / "ens" / "members").iterdir()) if p.name.startswith("2-"))
    state = torch.load(member / "best.pt", weights_only=True)
    huge_weights(state)
    (member / "best.pt").unlink()  # a hard link to the source run's file: replace, don't write through
    torch.save(state, member / "best.pt")
    proc = cli("evaluate", "--run", tmp_path / "ens", "--data", data)
    assert proc.returncode == 2 and member.name in proc.stderr and "not numbers" in proc.stderr, proc.stderr
