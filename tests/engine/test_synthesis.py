"""Synthesis for minority classes: imbalanced-learn over-samplers in feature space, Remix's label
rule and intra-class minority mixup in image space."""
import numpy as np
import pytest
import torch

from balancelab.engine.train.augment import MinorityMixup, Remix, make_minority_mixers, remix_label_weights
from balancelab.engine.train.decoupled import RetrainError, class_balanced_indices, synthesise
from balancelab.engine.train.strategies import COMPONENTS, STRATEGIES, StrategyError, describe_strategies, parse_strategy


def long_tailed_features(counts=(80, 30, 12), dim=8, seed=0):
    """Overlapping Gaussian blobs, one per class, so every sampler finds minority points near others."""
    rng = np.random.default_rng(seed)
    feats = np.concatenate([rng.normal(c * 1.5, 1.0, size=(n, dim)) for c, n in enumerate(counts)])
    labels = np.repeat(np.arange(len(counts)), counts)
    return feats.astype(np.float32), labels


@pytest.mark.parametrize("sampler", ["SMOTE", "BorderlineSMOTE", "ADASYN", "SVMSMOTE", "KMeansSMOTE"])
def test_synthesis_adds_new_minority_points_and_keeps_the_originals(sampler):
    feats, labels = long_tailed_features()
    x, y = synthesise(feats, labels, sampler, seed=0)
    before, after = np.bincount(labels), np.bincount(y, minlength=3)
    assert np.array_equal(x[:len(feats)], feats) and np.array_equal(y[:len(labels)], labels)
    assert after[0] == before[0]  # the majority class gets nothing
    assert after[1:].sum() > before[1:].sum()  # the minority classes get new points
    new = x[len(feats):]
    assert set(y[len(labels):].tolist()) <= {1, 2}
    # every synthetic point is new: not equal to any original feature vector
    distance = np.abs(new[:, None, :] - feats[None, :, :]).max(axis=2).min(axis=1)
    assert (distance > 1e-6).all()


@pytest.mark.parametrize("sampler", ["SMOTE", "KMeansSMOTE"])
def test_smote_balances_the_features_exactly(sampler):
    feats, labels = long_tailed_features()
    _, y = synthesise(feats, labels, sampler, seed=0)
    assert np.bincount(y).tolist() == [80, 80, 80]


def test_a_class_of_two_images_still_gets_neighbours_and_one_image_is_refused():
    feats, labels = long_tailed_features((40, 2))
    _, y = synthesise(feats, labels, "SMOTE", seed=0)
    assert np.bincount(y).tolist() == [40, 40]
    feats, labels = long_tailed_features((40, 1))
    with pytest.raises(RetrainError, match="at least 2"):
        synthesise(feats, labels, "SMOTE", seed=0)


def test_class_balanced_resampling_draws_every_class_equally():
    labels = np.array([0] * 50 + [2] * 5)  # class 1 absent
    idx = class_balanced_indices(labels, np.random.default_rng(0))
    assert np.bincount(labels[idx]).tolist() == [50, 0, 50]


def test_remix_gives_the_label_to_the_rarer_image_only_when_it_dominates_the_mix():
    lam = torch.tensor([0.3, 0.7, 0.8, 0.3, 0.4])  # share of the first image
    n_first = torch.tensor([1000.0, 1000.0, 10.0, 10.0, 100.0])
    n_second = torch.tensor([10.0, 10.0, 1000.0, 1000.0, 100.0])
    got = remix_label_weights(lam, n_first, n_second, kappa=3.0, tau=0.5)
    # 1: majority first, the minority covers 70% -> all minority; 2: majority covers 70% -> mixup;
    # 3: minority first covering 80% -> all minority; 4: minority covers 30% only -> mixup; 5: equal counts -> mixup
    assert got.tolist() == pytest.approx([0.0, 0.7, 1.0, 0.3, 0.4])
    assert remix_label_weights(lam, n_first, n_second, kappa=200.0, tau=0.5).tolist() == pytest.approx(lam.tolist())


def test_remix_mixes_images_and_targets_with_the_same_pairs():
    torch.manual_seed(0)
    b, counts = 8, torch.tensor([100.0, 5.0])
    x = torch.eye(b).view(b, 1, 1, b)  # image i is the unit vector e_i: a mix shows its pair and factor
    y = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])
    mixed, target = Remix(counts, 2, alpha=1.0, kappa=3.0, tau=0.5)(x, y)
    assert target.shape == (b, 2) and torch.allclose(target.sum(dim=1), torch.ones(b))
    ruled = 0
    for i in range(b):
        row = mixed[i].flatten()
        others = row.clone()
        others[i] = 0.0
        if float(others.max()) == 0.0:  # paired with itself
            assert target[i, int(y[i])] == pytest.approx(1.0)
            continue
        j, lam = int(others.argmax()), row[i:i + 1]
        assert row[j] == pytest.approx(1.0 - float(lam))
        want = remix_label_weights(lam, counts[y[i]].view(1), counts[y[j]].view(1), 3.0, 0.5)
        expected = want * torch.nn.functional.one_hot(y[i], 2) + (1 - want) * torch.nn.functional.one_hot(y[j], 2)
        assert torch.allclose(target[i], expected.flatten())
        ruled += int(float(want) in (0.0, 1.0) and y[i] != y[j])
    assert ruled  # this seed exercises the rule at least once, not only plain mixup


def test_minority_mixup_mixes_minority_images_within_their_class_only():
    torch.manual_seed(0)
    values = torch.tensor([0.0, 0.1, 0.2, 0.5, 0.9, 0.6, 1.0])
    x = values.view(7, 1, 1, 1).expand(7, 1, 3, 3).contiguous()
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    mixed, target = MinorityMixup(torch.tensor([False, True, True]))(x, y)
    assert torch.equal(target, y)  # labels are unchanged
    assert torch.equal(mixed[:3], x[:3])  # the majority class is untouched
    for r, partner in ((3, 4), (4, 3), (5, 6), (6, 5)):  # mixed with its own class, at least half itself
        own, other, got = float(values[r]), float(values[partner]), float(mixed[r, 0, 0, 0])
        share = (got - other) / (own - other)
        assert 0.5 - 1e-5 <= share <= 1.0 + 1e-5
    assert not torch.equal(mixed[3:], x[3:])


def test_new_components_parse_compose_and_are_described():
    plan = parse_strategy("oversample+minority-augment+crt-smote")
    assert plan.retrain == "crt-smote" and plan.sampler == "oversample" and plan.minority_augmentation.name == "minority-augment"
    assert parse_strategy("remix+minority-mixup").remix and parse_strategy("minority-mixup").minority_mixup
    with pytest.raises(StrategyError, match="classifier re-training"):
        parse_strategy("crt+crt-smote")
    text = describe_strategies()
    for name in ("crt", "crt-smote", "crt-borderline-smote", "crt-adasyn", "crt-svm-smote", "crt-kmeans-smote",
                 "remix", "minority-mixup"):
        assert name in STRATEGIES and f"  {name} " in text
    # every re-training component names an over-sampler imbalanced-learn really has
    import imblearn.over_sampling as over

    for c in COMPONENTS.values():
        if c.axis == "retrain" and c.feature_sampler != "class-balanced":
            assert hasattr(over, c.feature_sampler), c.name


def test_the_mixer_of_a_plan_chains_intra_class_before_cross_class_mixing():
    plan = parse_strategy("remix+minority-mixup")
    mixer = make_minority_mixers(plan, [50, 5], 2, 1.0, 3.0, 0.5, np.array([False, True]))
    assert [type(m).__name__ for m in mixer.mixers] == ["MinorityMixup", "Remix"]
    assert make_minority_mixers(parse_strategy("oversample"), [50, 5], 2, 1.0, 3.0, 0.5, np.array([False, True])) is None


def test_a_run_with_remix_and_minority_mixup_trains(demo_root, tmp_path):
    from balancelab.engine.core.events import Finished
    from balancelab.engine.train.config import TrainConfig
    from balancelab.engine.train.run import train

    cfg = TrainConfig(data=str(demo_root), out=str(tmp_path / "run"), model="tiny-2conv", epochs=1, lr=3e-3,
                      device="cpu", strategy="oversample+remix+minority-mixup")
    last = list(train(cfg))[-1]
    assert isinstance(last, Finished) and not last.stopped, last
    assert last.result.metrics["strategy"] == "oversample+remix+minority-mixup"


def test_kmeans_smote_grows_a_small_class_spread_over_many_clusters():
    """KMeansSMOTE found no cluster with enough of a small, spread-out class and failed the run
    after its epochs; it now tries fewer clusters, down to one."""
    rng = np.random.default_rng(0)
    big = rng.normal(0, 1, size=(120, 4))
    centres = np.array([[10, 0, 0, 0], [-10, 0, 0, 0], [0, 10, 0, 0], [0, -10, 0, 0]], dtype=float)
    small = np.concatenate([c + rng.normal(0, 0.1, size=(2, 4)) for c in centres])  # 8 images in 4 far blobs
    feats = np.concatenate([big, small]).astype(np.float32)
    labels = np.array([0] * 120 + [1] * 8)
    x, y = synthesise(feats, labels, "KMeansSMOTE", seed=0)
    assert np.bincount(y).tolist() == [120, 120] and len(x) == 240
