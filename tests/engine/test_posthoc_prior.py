"""Post-hoc logit adjustment subtracts the training *data*'s class prior, also for a re-sampled run
(whose per-epoch prior is uniform and would make the adjustment a no-op); crafted records are refused."""
import json

import numpy as np
import pytest

from balancelab.engine.core.events import Finished
from balancelab.engine.core.metrics import posthoc_log_prior, prior_is_uniform
from balancelab.engine.results.inference import evaluate_run, rescore
from balancelab.engine.results.loaded_run import load_run
from balancelab.engine.train.checkpoints import load_checkpoint
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.train.run import train
from balancelab.engine.train.run_folder import list_runs, read_predictions


def test_a_resampled_run_is_adjusted_by_the_data_prior(demo_root, tmp_path):
    out = tmp_path / "runs" / "over"
    cfg = TrainConfig(data=str(demo_root), out=str(out), model="tiny-2conv", epochs=1, lr=3e-3, seed=0,
                      strategy="oversample", device="cpu")
    assert isinstance(list(train(cfg))[-1], Finished)
    state = load_checkpoint(str(out / "best.pt"))
    counts = np.array(state["train_counts"], dtype=float)
    assert prior_is_uniform(state["log_prior"]) and not prior_is_uniform(np.log(counts))  # saw a balanced epoch
    prior = posthoc_log_prior(state, len(counts))
    assert np.allclose(prior, np.log(counts / counts.sum()))
    paths, classes, y_true, _, probs = read_predictions(str(out))
    fast = rescore(probs, y_true, classes, prior, 1.0)
    slow = evaluate_run(str(out), str(demo_root), posthoc_tau=1.0)
    assert fast["confusion_matrix"] == slow["confusion_matrix"]
    unadjusted = json.loads((out / "metrics.json").read_text())["confusion_matrix"]
    assert fast["confusion_matrix"] != unadjusted  # the data prior moves predictions (the uniform one would not)
    assert rescore(probs, y_true, classes, state["log_prior"], 1.0)["confusion_matrix"] == unadjusted
    loaded = load_run(next(r for r in list_runs(str(tmp_path / "runs")) if r["dir"] == str(out)))
    assert np.allclose(loaded.log_prior, prior)


@pytest.mark.parametrize("record, why", [
    ({"log_prior": [0.0, 0.0]}, "2 values for 3 classes"),
    ({"log_prior": [0.0, float("nan"), 0.0]}, "not finite"),
    ({"log_prior": ["a", 0.0, 0.0]}, "not a list of numbers"),
])
def test_a_crafted_prior_is_refused(record, why):
    with pytest.raises(ValueError, match=why):
        posthoc_log_prior(record, 3)


def test_bad_counts_fall_back_and_good_counts_win():
    uniform = np.log(np.full(3, 1 / 3))
    assert np.allclose(posthoc_log_prior({}, 3), uniform)
    for counts in ([1, 2], [1, -2, 3], [True, 2, 3], ["1", 2, 3], [0, 0, 0], "123", [float("inf"), 1, 1],
                   [1e308, 1e308, 1], [10**400, 1, 1], [float("nan"), 1, 1]):
        assert np.allclose(posthoc_log_prior({"train_counts": counts, "log_prior": list(uniform)}, 3), uniform)
    assert np.allclose(posthoc_log_prior({"train_counts": [6, 3, 1], "log_prior": list(uniform)}, 3), np.log([0.6, 0.3, 0.1]))
    # a class without images gets the smallest share of the others, not log(0)
    assert np.allclose(posthoc_log_prior({"train_counts": [8, 2, 0]}, 3), np.log([0.8, 0.2, 0.2]) - np.log(1.2))
