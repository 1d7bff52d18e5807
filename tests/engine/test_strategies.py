import numpy as np
import pytest
import torch
import torch.nn.functional as F

from balancelab.engine.train.losses import BalancedLoss
from balancelab.engine.train.strategies import StrategyError, class_weights_for_epoch, effective_class_mix, effective_number_weights, epoch_indices, inverse_frequency_weights, log_prior, parse_strategy

LABELS = np.repeat(np.arange(3), [100, 30, 10])


def test_parse_and_compose():
    plan = parse_strategy("mixup+balanced-softmax")
    assert plan.mixup and plan.balanced_softmax and plan.sampler is None
    with pytest.raises(StrategyError, match="unknown strategy"):
        parse_strategy("smote-ish")
    with pytest.raises(StrategyError, match="one sampler"):
        parse_strategy("oversample+undersample")
    with pytest.raises(StrategyError, match="one loss weighting"):
        parse_strategy("weighted-loss+drw")
    with pytest.raises(StrategyError):
        parse_strategy("none+focal")


def test_plain_epoch_is_a_permutation():
    idx = epoch_indices(parse_strategy("none"), LABELS, 0, 0)
    assert sorted(idx.tolist()) == list(range(len(LABELS)))


def test_oversample_balances_to_the_majority_and_redraws():
    plan = parse_strategy("oversample")
    a = epoch_indices(plan, LABELS, 0, 0)
    b = epoch_indices(plan, LABELS, 1, 0)
    assert np.bincount(LABELS[a]).tolist() == [100, 100, 100]
    assert not np.array_equal(np.sort(a), np.sort(b)), "minority repeats should be re-drawn per epoch"


def test_oversample_sampling_strategy_is_passed_to_imblearn():
    a = epoch_indices(parse_strategy("oversample"), LABELS, 0, 0, sampling_strategy="0.5")
    # ratio 0.5: every minority class is raised to half of the majority
    assert np.bincount(LABELS[a]).tolist() == [100, 50, 50]


def test_undersample_balances_to_the_minority():
    a = epoch_indices(parse_strategy("undersample"), LABELS, 0, 0)
    assert np.bincount(LABELS[a]).tolist() == [10, 10, 10]
    assert len(set(a.tolist())) == 30


def test_balanced_sampler_draws_classes_uniformly():
    plan = parse_strategy("balanced-sampler")
    counts = np.zeros(3)
    for epoch in range(50):
        idx = epoch_indices(plan, LABELS, epoch, 0)
        assert len(idx) == len(LABELS)
        counts += np.bincount(LABELS[idx], minlength=3)
    share = counts / counts.sum()
    assert np.allclose(share, 1 / 3, atol=0.03), share


def test_weights():
    counts = np.array([100, 30, 10])
    w = inverse_frequency_weights(counts)
    assert w[2] / w[0] == pytest.approx(10.0) and w.sum() == pytest.approx(3.0)
    assert np.allclose(effective_number_weights(counts, 0.0), 1.0)  # beta=0: no re-weighting
    assert np.allclose(effective_number_weights(counts, 0.999999), w, rtol=1e-3)  # beta->1: inverse frequency
    drw = parse_strategy("drw")
    assert class_weights_for_epoch(drw, counts, 0, 0.999, 2) is None
    assert class_weights_for_epoch(drw, counts, 2, 0.999, 2) is not None


def test_balanced_softmax_adds_log_prior_to_logits():
    counts = np.array([100, 30, 10])
    prior = torch.tensor(log_prior(counts), dtype=torch.float32)
    logits = torch.randn(8, 3)
    y = torch.randint(0, 3, (8,))
    loss = BalancedLoss(3, logit_offset=prior)(logits, y)
    assert loss.item() == pytest.approx(F.cross_entropy(logits + prior, y).item(), rel=1e-5)


def test_weighted_loss_matches_pytorch_and_focal_reduces_easy_examples():
    w = torch.tensor([0.2, 1.0, 3.0])
    logits = torch.randn(16, 3)
    y = torch.randint(0, 3, (16,))
    assert BalancedLoss(3, class_weights=w)(logits, y).item() == pytest.approx(F.cross_entropy(logits, y, weight=w).item(), rel=1e-5)
    assert BalancedLoss(3, focal_gamma=0.0)(logits, y).item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    easy = torch.tensor([[8.0, 0.0, 0.0]])
    ce = BalancedLoss(3)(easy, torch.tensor([0])).item()
    focal = BalancedLoss(3, focal_gamma=2.0)(easy, torch.tensor([0])).item()
    assert focal < ce * 0.01


def test_soft_targets_equal_hard_targets_when_one_hot():
    logits = torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 1])
    loss = BalancedLoss(3, class_weights=torch.tensor([1.0, 2.0, 3.0]))
    assert loss(logits, y).item() == pytest.approx(loss(logits, F.one_hot(y, 3).float()).item(), rel=1e-6)


def test_effective_class_mix_preview():
    counts = [100, 30, 10]
    plain = effective_class_mix(parse_strategy("none"), counts)
    assert plain["samples_per_epoch"] == counts
    assert plain["loss_share"][0] == pytest.approx(100 / 140)
    balanced = effective_class_mix(parse_strategy("balanced-sampler"), counts)
    assert np.allclose(balanced["loss_share"], 1 / 3)
    weighted = effective_class_mix(parse_strategy("weighted-loss"), counts)
    assert np.allclose(weighted["loss_share"], 1 / 3)
    assert effective_class_mix(parse_strategy("undersample"), counts)["samples_per_epoch"] == [10, 10, 10]


def test_a_registered_component_is_usable_everywhere_without_other_edits(monkeypatch):
    """One entry in the registry: the parser, training-time sampling, expected counts and the help text see it."""
    import numpy as np

    import balancelab.engine.train.strategies as st

    monkeypatch.setattr(st, "COMPONENTS", dict(st.COMPONENTS))
    monkeypatch.setattr(st, "STRATEGIES", dict(st.STRATEGIES))
    every_other = st.Component("every-other", "sampler", "keeps every second image (a test sampler)",
                               draw=lambda labels, rng, s: np.arange(0, len(labels), 2))
    st.register(every_other)  # nothing else: the parser, sampling and help text see it
    plan = st.parse_strategy("every-other+focal")
    assert plan.sampler == "every-other" and plan.focal
    labels = np.array([0, 0, 0, 0, 1, 1])
    assert st.epoch_indices(plan, labels, 0, 0).tolist() == [0, 2, 4]
    assert st.expected_epoch_counts(plan, np.array([4, 2])).tolist() == [2.0, 1.0]
    assert "every-other" in st.describe_strategies()
    with pytest.raises(st.StrategyError, match="choose one sampler"):
        st.parse_strategy("every-other+oversample")
    with pytest.raises(ValueError, match="registered twice"):
        st.register(every_other)
    with pytest.raises(ValueError, match="needs draw"):
        st.register(st.Component("broken", "sampler", "no behaviour"))


def test_exclusive_axes_refuse_two_components_and_combinable_ones_accept_them():
    from balancelab.engine.train.strategies import AXES, COMPONENTS, parse_strategy

    for axis in AXES.values():
        names = [c.name for c in COMPONENTS.values() if c.axis == axis.key]
        if len(names) < 2:
            continue
        if axis.exclusive:
            with pytest.raises(StrategyError):
                parse_strategy("+".join(names[:2]))
        else:
            assert parse_strategy("+".join(names)).on(axis.key) == names


def test_a_spread_is_shown_only_when_there_is_one():
    from balancelab.engine.core.metrics import format_mean_spread, prior_is_uniform

    assert format_mean_spread(0.91234, 0.0, 1) == "0.9123"
    assert format_mean_spread(0.91234, 0.00412, 3) == "0.9123 ± 0.0041"
    assert prior_is_uniform(np.log(np.full(4, 0.25))) and not prior_is_uniform(np.log([0.7, 0.2, 0.1]))


def test_the_metric_registry_is_what_metrics_json_holds():
    from balancelab.engine.core.metrics import HEADLINE, compute_metrics

    y = np.array([0, 0, 0, 1, 1, 2])
    probs = np.eye(3)[[0, 0, 1, 1, 1, 0]]
    m = compute_metrics(y, probs, ["a", "b", "c"])
    assert list(HEADLINE) == [k for k in m if k in HEADLINE]  # every headline metric, in registry order
    assert m["accuracy"] == pytest.approx(4 / 6) and m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["geometric_mean"] == 0.0  # class c never recognised
