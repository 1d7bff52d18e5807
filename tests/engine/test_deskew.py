"""Deskewing inside the model: a slanted stroke comes out upright, whatever the ink's colour; it
changes no weight, is recorded in the checkpoint and used wherever the run's model is loaded
(evaluation, export, Grad-CAM drawn back onto the user's image)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from balancelab.engine.core.events import Finished
from balancelab.engine.results.gradcam import grad_cam
from balancelab.engine.results.inference import load_run_model
from balancelab.engine.train.checkpoints import load_checkpoint
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.train.deskew import Deskew, background, slant
from balancelab.engine.train.models import build_model
from balancelab.engine.train.run import train
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def slanted_bar(lean: float, size: int = 28, dark_on_light: bool = False) -> torch.Tensor:
    """A 3-pixel-wide stroke leaning ``lean`` columns per row, 1 x 1 x size x size."""
    img = torch.zeros(1, 1, size, size)
    mid = size // 2
    for r in range(4, size - 4):
        c = int(round(mid + lean * (r - mid)))
        img[0, 0, r, c - 1:c + 2] = 1.0
    return 1.0 - img if dark_on_light else img


def measured_slant(x: torch.Tensor) -> float:
    return float(slant(x, background(x))[0][0])


@pytest.mark.parametrize("dark_on_light", [False, True], ids=["white ink", "dark ink"])
@pytest.mark.parametrize("lean", [-0.5, 0.3])
def test_a_slanted_stroke_comes_out_upright_in_place(lean, dark_on_light):
    x = slanted_bar(lean, dark_on_light=dark_on_light)
    assert measured_slant(x) == pytest.approx(lean, abs=0.05)
    out = Deskew()(x)
    assert abs(measured_slant(out)) < 0.02
    rows = torch.arange(28.0).view(28, 1)
    ink_in, ink_out = (x - background(x)).abs()[0, 0], (out - background(out)).abs()[0, 0]
    centre_row = float((ink_in * rows).sum() / ink_in.sum())
    assert float((ink_out * rows).sum() / ink_out.sum()) == pytest.approx(centre_row, abs=0.3)  # kept its place
    bg = 1.0 if dark_on_light else 0.0
    assert torch.allclose(out[..., 0, :], torch.full((28,), bg), atol=1e-5)  # what the shear brings in is background


def test_upright_and_blank_images_are_left_as_they_are():
    upright = slanted_bar(0.0)
    assert torch.allclose(Deskew()(upright), upright, atol=1e-5)
    for blank in (torch.zeros(2, 3, 9, 9), torch.full((1, 1, 8, 8), 0.7)):
        assert torch.equal(Deskew()(blank), blank)


def test_maps_over_the_straightened_image_move_back_onto_the_stroke():
    x = slanted_bar(0.4)
    upright = Deskew()(x)
    back = Deskew().to_input(upright, x)
    corr = lambda a, b: float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])
    assert corr(back, x) > 0.85 > corr(upright, x)


def test_deskewing_adds_no_weight_and_changes_what_the_model_sees():
    torch.manual_seed(0)
    plain = build_model("tiny-2conv", 3, 1, 28)
    deskewing = build_model("tiny-2conv", 3, 1, 28, deskew=True)
    assert plain.state_dict().keys() == deskewing.state_dict().keys()
    deskewing.load_state_dict(plain.state_dict())
    plain.eval(), deskewing.eval()
    x = slanted_bar(0.4)
    with torch.inference_mode():
        assert not torch.allclose(plain(x), deskewing(x))
        assert torch.allclose(plain(Deskew()(x)), deskewing(x), atol=1e-6)


def test_grad_cam_of_a_deskewing_model_is_drawn_on_the_image_as_given():
    torch.manual_seed(0)
    plain = build_model("cifar-classic", 3, 1, 32).eval()
    deskewing = build_model("cifar-classic", 3, 1, 32, deskew=True).eval()
    deskewing.load_state_dict(plain.state_dict())
    x = slanted_bar(0.4, size=32)[0]
    maps, probs = grad_cam(deskewing, x, [0, 1])
    seen_maps, seen_probs = grad_cam(plain, Deskew()(x[None])[0], [0, 1])  # what the network computes on
    np.testing.assert_allclose(probs, seen_probs, atol=1e-5)
    for got, seen in zip(maps, seen_maps):
        want = Deskew().to_input(torch.from_numpy(seen)[None, None], x[None]).clamp_min(0)[0, 0].numpy()
        want = want / want.max() if want.max() > 0 else want
        np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.fixture(scope="module")
def deskew_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dk") / "data"
    for k, c in enumerate(("a", "b", "c")):
        for i in range(8):  # strokes leaning -0.45 to 0.45 columns per row: deskewing changes every image
            bar = slanted_bar(0.15 * ((k * 8 + i) % 7 - 3), size=16, dark_on_light=bool(i % 2))
            (root / c).mkdir(parents=True, exist_ok=True)
            Image.fromarray((bar[0, 0].numpy() * 255).astype(np.uint8), "L").save(root / c / f"{i}.png")
    out = tmp_path_factory.mktemp("dk") / "run"
    cfg = TrainConfig(data=str(root), out=str(out), model="tiny-2conv", epochs=1, image_size=16, batch_size=8,
                      seed=0, deskew=True)
    assert isinstance(list(train(cfg))[-1], Finished)
    return root, out


def test_the_checkpoint_records_it_and_every_loader_rebuilds_it(deskew_run, tmp_path):
    root, run = deskew_run
    assert load_checkpoint(str(run / "best.pt"))["deskew"] is True
    assert json.loads((run / "config.json").read_text())["deskew"] is True
    model, _ = load_run_model(str(run))
    assert isinstance(model.deskew, Deskew)
    state = torch.load(run / "best.pt", weights_only=True)
    del state["deskew"]  # a checkpoint from before the setting: not deskewed
    torch.save(state, tmp_path / "old.pt")
    assert "deskew" not in load_checkpoint(str(tmp_path / "old.pt"))


@pytest.mark.parametrize("kind", ["torchscript", "onnx"])
def test_an_export_deskews_like_the_run(deskew_run, tmp_path, kind):
    """The export's own check compares the written file's outputs with the run's model on real images."""
    if kind == "onnx":
        pytest.importorskip("onnxruntime")
    root, run = deskew_run
    model, _ = load_run_model(str(run))
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(p), dtype=np.float32) / 255.0)[None]
                     for p in sorted(root.glob("*/*.png"))])
    with torch.inference_mode():  # an export that dropped the deskewing would fail its own check
        assert (model(x) - model.backbone((x - model.mean) / model.std)).abs().max() > 1e-3
    out = tmp_path / f"m.{kind}"
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "export", "--run", str(run), "--format", kind,
                           "--data", str(root), "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)  # read back from the written file
    assert info["same_top1"] and info["max_abs_prob_diff"] < 1e-4
    assert "deskewing and mean/std normalisation are inside the model" in info["metadata"]["preprocessing"]


def test_feature_maps_say_they_are_of_the_straightened_image(deskew_run):
    from balancelab.engine.results.feature_maps import FeatureMapExplainer

    root, run = deskew_run
    maps = FeatureMapExplainer().maps(str(run), str(sorted(root.glob("a/*.png"))[0]))
    assert maps.deskewed and maps.layers


@pytest.mark.parametrize("preset", ["light", "geometric", "standard"])
def test_a_dark_on_light_image_is_judged_alike_after_the_training_augmentation(preset):
    """A shift used to bring in black strips: on white paper they read as ink, the slant as about
    0, and training saw slanted images that evaluation straightened."""
    from balancelab.engine.train.augment import make_augmentation

    dark = slanted_bar(0.3, dark_on_light=True).repeat(8, 1, 1, 1)
    out = make_augmentation(preset)(dark, torch.Generator().manual_seed(0))
    white = make_augmentation(preset)(1.0 - dark, torch.Generator().manual_seed(0))  # the same draws
    assert torch.allclose(background(out), torch.ones(8, 1, 1, 1))
    assert torch.allclose(out, 1.0 - white, atol=1e-6)  # the same image in the other ink
    slants = slant(out, background(out))[0]
    assert torch.allclose(slants, slant(white, background(white))[0], atol=1e-4)
    assert (slants.abs() > 0.1).all(), slants  # rotated by up to 10 degrees, still slanted: not read as 0
    straightened = Deskew()(out)
    assert (slant(straightened, background(straightened))[0].abs() < 0.03).all()


def test_augmenting_white_on_black_digits_is_what_it_was():
    """Zero is their background: the shift and the erasing fill as before, bit for bit (the
    README's long-tail rows stay this code's)."""
    import torch.nn.functional as F

    from balancelab.engine.train.augment import AffinePreset, random_erase

    torch.manual_seed(0)
    x = torch.zeros(6, 1, 28, 28)
    x[:, :, 5:23, 8:20] = torch.rand(6, 1, 18, 12)
    preset = AffinePreset(translate=0.12, scale=(0.85, 1.1), degrees=15, erase_prob=0.5)
    grid = preset.grid(x, torch.Generator().manual_seed(1))
    got = preset.sample(x, grid, torch.Generator().manual_seed(2))
    before = random_erase(F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False), 0.5,
                          torch.Generator().manual_seed(2))
    assert torch.equal(got, before)


def test_the_background_ignores_a_stroke_that_reaches_the_edge():
    x = torch.ones(1, 1, 16, 16)
    x[0, 0, :, 3] = 0.0  # a dark stroke from the top edge to the bottom one
    assert float(background(x)) == 1.0


def test_channels_last_input_stays_channels_last():
    x = slanted_bar(0.3).repeat(2, 3, 1, 1).contiguous(memory_format=torch.channels_last)
    assert Deskew()(x).is_contiguous(memory_format=torch.channels_last)


def test_an_ensemble_export_says_which_members_deskew():
    from balancelab.engine.results.export import _inside_the_model

    assert _inside_the_model({"deskew": True, "members": 2, "deskewed_members": 2}).startswith("deskewing and")
    assert "in 1 of its 2 members" in _inside_the_model({"deskew": False, "members": 2, "deskewed_members": 1})
    assert _inside_the_model({}) == "mean/std normalisation is inside the model"
