"""`resume RUN`: a killed run continues with the settings it saved (what the GUI's Resume does),
without the user retyping them; a finished run trains further only when asked for more epochs."""
from __future__ import annotations

import json
import shutil

from balancelab.engine.cli.main import main
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.train.run import train
from balancelab.engine.train.run_events import CheckpointSaved
from balancelab.engine.train.run_folder import read_state


def killed_run(demo_root, out):
    events = train(TrainConfig(data=str(demo_root), out=str(out), model="tiny-2conv", epochs=3, lr=0.004, seed=5,
                               augment="none", batch_size=128))
    next(ev for ev in events if isinstance(ev, CheckpointSaved) and ev.kind == "last")
    events.close()
    return out


def test_a_killed_run_goes_on_with_its_own_settings(demo_root, tmp_path, capsys):
    run = killed_run(demo_root, tmp_path / "run")
    assert main(["resume", str(run), "--device", "cpu"]) == 0
    assert "run folder:" in capsys.readouterr().out and read_state(str(run)) == "complete"
    metrics = json.loads((run / "metrics.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3] and (config["lr"], config["seed"]) == (0.004, 5)


def test_a_finished_run_trains_further_only_with_more_epochs(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["resume", str(run)]) == 2
    assert "give --epochs above 1" in capsys.readouterr().err and read_state(str(run)) == "complete"
    assert main(["resume", str(run), "--epochs", "2", "--device", "cpu"]) == 0
    assert len(json.loads((run / "metrics.json").read_text())["history"]) == 2


def test_a_moved_dataset_is_given_with_data_and_a_wrong_one_is_refused(demo_root, tmp_path, capsys):
    moved = tmp_path / "moved"
    shutil.copytree(demo_root, moved)
    run = killed_run(moved, tmp_path / "run")
    shutil.move(str(moved), str(tmp_path / "here"))
    assert main(["resume", str(run)]) == 2
    assert "dataset folder does not exist" in capsys.readouterr().err
    assert main(["resume", str(run), "--data", str(tmp_path / "here"), "--device", "cpu"]) == 0
    assert main(["resume", str(tmp_path), "--data", str(demo_root)]) == 2  # no run folder
    assert "not a BalanceLab run" in capsys.readouterr().err
