"""Precise BatchNorm statistics before evaluation: exact averages for the current weights, nothing
else changed (no random numbers drawn, momentum and mode restored), and a model that a few
steps left predicting one class evaluates properly again."""
import numpy as np
import torch

from balancelab.engine.data.image_bank import ImageBank
from balancelab.engine.train.precise_bn import recalibrate_batchnorm


def bank_of(n: int, seed: int = 0) -> ImageBank:
    rng = np.random.default_rng(seed)
    return ImageBank(rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8), np.zeros(n), [f"{i}.png" for i in range(n)])


def test_running_statistics_become_the_exact_mean_over_the_calibration_batches():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 4, 3)
    model = torch.nn.Sequential(conv, torch.nn.BatchNorm2d(4), torch.nn.Dropout(0.5))
    bn = model[1]
    bn.running_mean.fill_(100.0)  # statistics that lag far behind the weights
    bn.running_var.fill_(1e-3)
    bank = bank_of(32)
    model.train()
    rng_before = torch.get_rng_state()
    assert recalibrate_batchnorm(model, bank, torch.device("cpu"), batch_size=16)
    assert torch.equal(torch.get_rng_state(), rng_before)  # dropout stayed off: training replays the same
    assert model.training and bn.momentum == 0.1
    x, _ = bank.batch(np.arange(32), torch.device("cpu"))
    with torch.no_grad():
        out = conv(x)
    order = np.random.default_rng(0).permutation(32)  # the halves the function drew
    halves = [np.sort(order[:16]), np.sort(order[16:])]
    expected = torch.stack([out[h].mean((0, 2, 3)) for h in halves]).mean(0)
    assert torch.allclose(bn.running_mean, expected, atol=1e-5)


def test_models_without_batchnorm_or_data_are_left_alone():
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    assert not recalibrate_batchnorm(plain, bank_of(8), torch.device("cpu"), 4)
    bn_model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    bn_model[1].running_mean.fill_(3.0)
    assert not recalibrate_batchnorm(bn_model, bank_of(1), torch.device("cpu"), 4)  # one image: no variance
    assert torch.all(bn_model[1].running_mean == 3.0)


def test_a_model_with_lagging_statistics_evaluates_properly_again():
    """Two separable classes; a few high-rate steps leave BatchNorm's running averages far from
    the current weights' statistics, so evaluation mode is wrong until they are recomputed."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 64
    labels = np.repeat([0, 1], n // 2)
    array = np.where(labels[:, None, None, None] == 1, 200, 40) + rng.integers(0, 30, (n, 8, 8, 1))
    bank = ImageBank(array.astype(np.uint8), labels, [f"{i}.png" for i in range(n)])
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4, momentum=0.01), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = bank.batch(np.arange(n), torch.device("cpu"))
    model.train()
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    def eval_accuracy() -> float:
        model.eval()
        with torch.no_grad():
            return float((model(x).argmax(1) == y).float().mean())

    with torch.no_grad():
        model.train()
        train_mode = float((model(x).argmax(1) == y).float().mean())
    before = eval_accuracy()
    recalibrate_batchnorm(model, bank, torch.device("cpu"), 16)
    after = eval_accuracy()
    assert before < 0.75 and after == train_mode == 1.0, (before, after, train_mode)
