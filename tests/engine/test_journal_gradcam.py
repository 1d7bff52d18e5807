import hashlib

import numpy as np
import pytest
import torch

from balancelab.engine.results.gradcam import grad_cam
from balancelab.engine.data.journal import Journal, JournalError
from balancelab.engine.train.models import build_model
from tests.hostile import write_png


def digest(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_relabel_exclude_and_undo_are_byte_identical(tmp_path):
    a = write_png(tmp_path / "train" / "cat" / "x.png")
    write_png(tmp_path / "train" / "dog" / "x.png", seed=9)  # name clash in the target class
    before = digest(a)
    j = Journal(str(tmp_path))
    act = j.relabel("train/cat/x.png", "dog")
    assert act.dst == "train/dog/x__1.png" and not a.exists()
    assert digest(tmp_path / act.dst) == before
    ex = Journal(str(tmp_path)).exclude("train/dog/x.png")  # a fresh instance reads the journal
    assert ex.dst == "_excluded/train/dog/x.png"
    j2 = Journal(str(tmp_path))
    j2.undo()
    j2.undo()
    assert digest(a) == before and (tmp_path / "train" / "dog" / "x.png").exists()
    with pytest.raises(JournalError, match="nothing to undo"):
        j2.undo()
    assert [x.state for x in Journal(str(tmp_path)).actions] == ["undone", "undone"]


def test_interrupted_action_is_settled_on_recover(tmp_path):
    write_png(tmp_path / "a" / "1.png")
    j = Journal(str(tmp_path))
    j.relabel("a/1.png", "b")
    # simulate a crash between 'pending' and the move: journal says pending, file unmoved
    j.actions[-1].state = "pending"
    (tmp_path / "b" / "1.png").rename(tmp_path / "a" / "1.png")
    j._save()
    settled = Journal(str(tmp_path)).recover()
    assert settled[0].state == "rolled-back" and (tmp_path / "a" / "1.png").exists()


def test_paths_outside_the_dataset_are_refused(tmp_path):
    write_png(tmp_path / "a" / "1.png")
    with pytest.raises(JournalError):
        Journal(str(tmp_path)).relabel("../../etc/passwd", "b")


def test_grad_cam_shapes_and_class_dependence():
    torch.manual_seed(0)
    model = build_model("cifar-classic", 3, 1, 32)
    maps, probs = grad_cam(model, torch.rand(1, 32, 32), [0, 1])
    assert maps.shape == (2, 32, 32)
    assert maps.min() >= 0 and maps.max() <= 1
    assert probs.shape == (3,) and abs(probs.sum() - 1) < 1e-5
    assert not np.allclose(maps[0], maps[1])
