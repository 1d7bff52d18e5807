"""Inception v3: its auxiliary classifier adds 0.4 x its loss in training only; evaluation,
Grad-CAM, embeddings and exports see the main logits alone. Small inputs (75 px) keep it fast."""
import numpy as np
import pytest
import torch

from balancelab.engine.core.events import Finished, StopToken
from balancelab.engine.data.image_bank import ImageBank
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.train.loop import EpochContext, evaluate, train_one_epoch
from balancelab.engine.train.losses import BalancedLoss
from balancelab.engine.train.models import MODELS, build_model, head_parameters
from balancelab.engine.train.run import train
from tests.hostile import write_png

SIZE = 75  # torchvision's smallest input for Inception v3


class SpyLoss(BalancedLoss):
    """The strategy loss, recording every call (logits shape, value)."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.calls: list[tuple[tuple[int, ...], float]] = []

    def forward(self, logits, target):
        value = super().forward(logits, target)
        self.calls.append((tuple(logits.shape), float(value.detach())))
        return value


def _bank(n: int = 4, classes: int = 3) -> ImageBank:
    rng = np.random.default_rng(0)
    return ImageBank(rng.integers(0, 256, (n, SIZE, SIZE, 1), dtype=np.uint8), np.arange(n) % classes,
                     [f"{i}.png" for i in range(n)])


def test_registry_entry_and_its_size_rule(tmp_path, capsys):
    from balancelab.engine.cli.main import main
    from balancelab.engine.train.config import ConfigError

    spec = MODELS["inception_v3"]
    assert spec.default_size == 299 and spec.min_size == SIZE and spec.aux_loss_weight == pytest.approx(0.4)
    assert all(m.aux_loss_weight == 0 for m in MODELS.values() if m.name != "inception_v3")
    cfg = TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), model="inception_v3")
    assert cfg.resolved_image_size() == 299
    with pytest.raises(ConfigError, match="at least 75 px"):
        TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), model="inception_v3", image_size=64).validate()
    assert main(["models"]) == 0 and "inception_v3" in capsys.readouterr().out


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("inception_v3", 3, 1, SIZE)  # built once: Inception is slow to initialise


def test_aux_loss_is_added_in_training_and_absent_in_evaluation(model):
    bank, loss_fn = _bank(), SpyLoss(3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the weights stay, the gradients are kept
    ctx = EpochContext(model=model, bank=bank, loss_fn=loss_fn, optimizer=optimizer, scheduler=None,
                       device=torch.device("cpu"), batch_size=4, aux_weight=MODELS["inception_v3"].aux_loss_weight)
    steps = train_one_epoch(ctx, np.arange(4), 1, StopToken())
    progress = next(steps)
    # the strategy loss ran on both heads, and the batch loss is main + 0.4 x aux
    assert [shape for shape, _ in loss_fn.calls] == [(4, 3), (4, 3)]
    (_, main), (_, aux) = loss_fn.calls
    assert progress.loss == pytest.approx(main + 0.4 * aux, rel=1e-5)
    assert model.backbone.AuxLogits.fc.weight.grad is not None  # the aux head was trained
    assert model.backbone.AuxLogits.fc.weight.grad.abs().sum() > 0
    # evaluation: plain logits, the loss is never called, the aux head never runs
    loss_fn.calls.clear()
    ran = []
    hook = model.backbone.AuxLogits.register_forward_hook(lambda *_: ran.append(1))
    probs, val_loss = evaluate(model, bank, torch.device("cpu"))
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, SIZE, SIZE))
    hook.remove()
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3)
    assert probs.shape == (4, 3) and np.isfinite(val_loss)
    assert loss_fn.calls == [] and ran == []


def test_aux_weight_zero_means_main_loss_only(model):
    loss_fn = SpyLoss(3)
    ctx = EpochContext(model=model, bank=_bank(), loss_fn=loss_fn, optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
                       scheduler=None, device=torch.device("cpu"), batch_size=4)
    progress = next(train_one_epoch(ctx, np.arange(4), 1, StopToken()))
    assert len(loss_fn.calls) == 1 and progress.loss == pytest.approx(loss_fn.calls[0][1], rel=1e-6)


def test_head_only_finetuning_trains_both_classifier_heads(model):
    head = {id(p) for p in head_parameters(model, "inception_v3")}
    assert id(model.backbone.fc.weight) in head and id(model.backbone.AuxLogits.fc.weight) in head
    assert id(model.backbone.Conv2d_1a_3x3.conv.weight) not in head


@pytest.fixture(scope="module")
def inception_run(tmp_path_factory):
    """A finished 1-epoch Inception run on 75 px images (2 classes)."""
    root = tmp_path_factory.mktemp("incep-data")
    for split, n in (("train", 6), ("test", 2)):
        for c, value in (("a", 30), ("b", 220)):
            for i in range(n):
                write_png(root / split / c / f"{i}.png", value=value, size=SIZE, seed=hash((split, c, i)) % 2**32)
    out = tmp_path_factory.mktemp("incep-run") / "run"
    cfg = TrainConfig(data=str(root), out=str(out), model="inception_v3", image_size=SIZE, epochs=1, batch_size=4,
                      seed=0, device="cpu", augment="none")
    events = list(train(cfg, StopToken()))
    assert isinstance(events[-1], Finished) and events[-1].result.metrics, events[-1]
    return root, out


def test_inception_run_exports_main_logits_to_torchscript_and_onnx(inception_run, tmp_path):
    from balancelab.engine.results.export import export_run

    root, run = inception_run
    for kind in ("torchscript", "onnx"):
        info = export_run(kind, str(run), str(tmp_path / f"m.{kind}"), str(root))
        assert info["same_top1"] and info["max_abs_prob_diff"] < 1e-4, (kind, info)
        assert info["metadata"]["model"] == "inception_v3" and info["metadata"]["image_size"] == SIZE


def test_inception_run_gives_grad_cam_and_embeddings(inception_run):
    from balancelab.engine.results.embeddings import penultimate_features
    from balancelab.engine.results.gradcam import grad_cam
    from balancelab.engine.results.inference import load_run_model

    _, run = inception_run
    model, _ = load_run_model(str(run))
    maps, probs = grad_cam(model, torch.rand(1, SIZE, SIZE), [0, 1])
    assert maps.shape == (2, SIZE, SIZE) and probs.shape == (2,)
    feats = penultimate_features(model, np.zeros((3, SIZE, SIZE, 1), dtype=np.uint8))
    assert feats.shape == (3, 2048)  # the main head's input, not the aux head's 768
