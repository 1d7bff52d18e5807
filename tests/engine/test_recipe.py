"""The proposed recipe (rules on synthetic counts) and the budgeted recipe search (tiny real runs)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from balancelab.engine.core.events import Failed, Finished, StopToken
from balancelab.engine.data.scanner import scan_sync
from balancelab.engine.data.splits import make_splits
from balancelab.engine.experiments.recipe import RecipeError, TrainingStats, recipe_for, recommend
from balancelab.engine.experiments.recipe_search import (SearchError, SearchRound, SearchStep, default_candidates,
                                                         fit_candidates, halving_plan, plan_cost, plan_search, search)
from balancelab.engine.train.run_events import BatchProgress, EpochEnd
from balancelab.engine.train.strategies import components_on, parse_strategy

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(model="tiny-2conv", epochs=2, image_size=16, device="cpu", batch_size=64)


def long_tail(n_max: int, classes: int, ratio: float) -> dict[str, int]:
    return {f"c{c}": max(1, round(n_max * ratio ** (-c / (classes - 1)))) for c in range(classes)}


@pytest.mark.parametrize("counts, strategy", [
    ({"a": 500, "b": 480, "c": 450}, "none"),  # balanced: no re-balancing
    ({"a": 500, "b": 200}, "oversample"),  # mild: minority repeated 2.5x, no stronger augmentation
    (long_tail(4250, 10, 100), "oversample+minority-augment"),  # MNIST-LT: the measured best
    ({"a": 300, "b": 1}, "oversample+minority-augment"),  # a one-image class
    ({**{f"c{i}": 40 for i in range(49)}, "head": 100_000}, "balanced-sampler+minority-augment"),  # epoch would grow 49x
])
def test_recipe_rules_on_synthetic_counts(counts, strategy, tmp_path):
    recipe = recipe_for(TrainingStats(counts, 28, True))
    assert recipe.strategy == strategy
    assert parse_strategy(recipe.strategy).name == recipe.strategy
    recipe.config(str(tmp_path), str(tmp_path / "run")).validate()  # every setting trainable as is
    assert f"smallest class {min(counts.values()):,} images" in recipe.reason and recipe.reason.count(".") <= 1


def test_mnist_lt_gets_the_measured_recipe():
    recipe = recipe_for(TrainingStats(long_tail(4250, 10, 100), 28, True))
    assert (recipe.model, recipe.epochs, recipe.batch_size, recipe.lr) == ("mnist-classic", 5, 64, 1e-3)
    assert recipe.reason.startswith("training split 101:1")


def test_model_follows_image_size_and_colour(tmp_path):
    counts = {"a": 100, "b": 100}
    assert recipe_for(TrainingStats(counts, 32, False)).model == "cifar-classic"
    big = recipe_for(TrainingStats(counts, 300, False))
    assert big.image_size == 64
    big.config(str(tmp_path), str(tmp_path / "r")).validate()


def test_one_class_is_refused():
    with pytest.raises(RecipeError):
        recipe_for(TrainingStats({"a": 10, "b": 0}, 28, True))


def test_recommend_reads_the_training_split_only(demo_root):
    scan = scan_sync(str(demo_root))
    recipe = recommend(scan)
    train = make_splits(scan, 0.15, 0).train
    assert sum(recipe.stats.counts.values()) == len(train)  # not val (held out), not test/
    assert recipe.stats.counts == dict(zip(make_splits(scan, 0.15, 0).classes, train.counts(10).tolist()))
    assert recipe.strategy == "oversample+minority-augment"


def test_default_candidates_come_from_the_registry():
    names = default_candidates()
    assert len(set(names)) == len(names) and all(parse_strategy(n).name == n for n in names)
    for axis in ("sampler", "weighting", "loss"):
        assert {c.name for c in components_on(axis)} <= set(names)
    assert {"none", "oversample+minority-augment", "balanced-sampler+minority-augment"} <= set(names)
    assert "undersample+minority-augment" not in names  # under-sampling repeats no minority image
    assert names[0] == "oversample+minority-augment"  # screened first: the measured best


def test_halving_plan_and_its_cost():
    assert halving_plan(8, 5) == [(8, 1), (4, 2), (2, 4), (1, 5)]
    assert plan_cost(halving_plan(8, 5)) == 8 + 4 + 2 * 2 + 1
    assert halving_plan(3, 2) == [(3, 1), (1, 2)]
    assert halving_plan(1, 5) == [(1, 5)]
    names = [f"s{i}" for i in range(12)]
    kept = fit_candidates(names, 5, 15)
    assert kept == names[:7] and plan_cost(halving_plan(7, 5)) <= 15 < plan_cost(halving_plan(8, 5))
    with pytest.raises(SearchError):
        fit_candidates(names, 5, 4)


@pytest.fixture(scope="module")
def searched(demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("search")
    events = list(search(str(demo_root), 2.0, ["none", "oversample", "balanced-softmax", "focal"], out=str(out), **TINY))
    return out, events


def test_search_respects_the_budget_and_halves(searched):
    out, events = searched
    assert isinstance(events[-1], Finished), events[-1]
    result = events[-1].result
    assert result.plan == [(3, 1), (1, 2)] and result.skipped == ["focal"]  # 4 do not fit in 2 x 2 epochs
    trained = [(e.strategy, e.event.epoch) for e in events if isinstance(e, SearchStep) and isinstance(e.event, EpochEnd)]
    assert len(trained) == result.epochs_used <= result.epochs_budget == 4
    assert sorted(s for s, epoch in trained if epoch == 1) == ["balanced-softmax", "none", "oversample"]
    round0 = {c.strategy: c.score for c in next(e for e in events if isinstance(e, SearchRound) and e.round == 1).leaderboard}
    best_of_round0 = max(round0, key=round0.get)
    assert [s for s, epoch in trained if epoch == 2] == [best_of_round0]  # continued, not restarted
    states = {c.strategy: c.state for c in result.leaderboard}
    assert states[best_of_round0] == "winner" and list(states.values()).count("dropped") == 2


def test_search_winner_is_a_full_length_run_on_identical_splits(searched):
    out, events = searched
    result = events[-1].result
    winner = next(c for c in result.leaderboard if c.state == "winner")
    last_round = [c for c in result.leaderboard if c.epochs == result.full_epochs]
    assert winner.score == max(c.score for c in last_round)
    metrics = json.loads(Path(result.winner_run_dir, "metrics.json").read_text())
    assert not metrics["stopped"] and len(metrics["history"]) == 2 and metrics["strategy"] == result.winner
    assert winner.score == metrics["history"][-1]["val_balanced_accuracy"]
    splits = {json.loads(Path(c.run_dir, "split.json").read_text())["val"].__repr__() for c in result.leaderboard}
    assert len(splits) == 1  # every candidate validated on the same images
    seeds = {json.loads(Path(c.run_dir, "config.json").read_text())["seed"] for c in result.leaderboard}
    assert seeds == {0}
    assert json.loads(Path(out, "search.json").read_text())["winner"] == result.winner


def test_two_finalists_at_full_length_when_the_budget_allows():
    names = [f"s{i}" for i in range(11)]
    assert plan_search(names, 5, 15) == (names[:6], [(6, 1), (3, 2), (2, 5)])  # one fewer screened than 7
    assert plan_search(names, 5, 10) == (names[:5], [(5, 1), (2, 2), (1, 5)])  # two finalists would screen 2
    assert plan_search(names[:4], 2, 4) == (names[:3], [(3, 1), (1, 2)])
    assert plan_search(names[:2], 5, 15) == (names[:2], [(2, 5)])  # both fit at full length: no 1-epoch cut
    assert plan_cost(halving_plan(6, 5, finalists=2)) == 6 + 3 + 2 * 3
    with pytest.raises(SearchError, match="a budget of 0.5 trainings cannot train even one"):
        plan_search(names, 4, 2)


def test_finalists_are_compared_at_full_length_not_at_an_earlier_peak(monkeypatch, demo_root, tmp_path):
    """'none' peaks at epoch 1 and falls, 'oversample' climbs: at full length 'oversample' wins
    (0.89 against 0.80), where a best-so-far score would crown 'none' for its 0.90."""
    curves = {"none": [0.90, 0.80, 0.80], "oversample": [0.85, 0.88, 0.89],
              "balanced-softmax": [0.10] * 3, "focal": [0.05] * 3}
    done: dict[str, int] = {}

    def fake_train(cfg, stop, **_):
        start = done.get(cfg.strategy, 0) if cfg.resume else 0
        for epoch in range(start + 1, cfg.epochs + 1):
            done[cfg.strategy] = epoch
            yield EpochEnd(epoch, {"val_balanced_accuracy": curves[cfg.strategy][epoch - 1]}, False)
            if stop.requested:
                break
        yield Finished(None, stopped=stop.requested)

    monkeypatch.setattr("balancelab.engine.experiments.recipe_search.train", fake_train)
    events = list(search(str(demo_root), 7 / 3, list(curves), out=str(tmp_path), **{**TINY, "epochs": 3}))
    result = events[-1].result
    assert result.plan == [(3, 1), (2, 3)] and result.skipped == ["focal"]
    scores = {c.strategy: c.score for c in result.leaderboard}
    assert scores["none"] == 0.80  # its latest epoch, not its 0.90 peak
    assert result.winner == "oversample" and scores["oversample"] == 0.89
    assert [(c.strategy, c.epochs) for c in result.leaderboard] == [  # furthest trained first, then by score
        ("oversample", 3), ("none", 3), ("balanced-softmax", 1)]
    assert done == {"none": 3, "oversample": 3, "balanced-softmax": 1}


def test_search_stops_promptly(demo_root, tmp_path):
    stop = StopToken()
    events = []
    for ev in search(str(demo_root), 2.0, ["none", "oversample"], stop=stop, out=str(tmp_path), **TINY):
        events.append(ev)
        if isinstance(ev, SearchStep) and isinstance(ev.event, BatchProgress):
            stop.request()  # inside the first run
    assert isinstance(events[-1], Finished) and events[-1].stopped and events[-1].result.winner is None
    assert not any(isinstance(e, SearchStep) and isinstance(e.event, EpochEnd) for e in events)
    assert not (tmp_path / "oversample").exists()  # the second candidate never started


def test_search_refuses_bad_input(tmp_path):
    def last(gen):
        return list(gen)[-1]

    assert isinstance(last(search(str(tmp_path / "missing"), 3.0)), Failed)
    assert "unknown strategy" in last(search(str(tmp_path), 3.0, ["oversampel"])).message
    assert isinstance(last(search(str(tmp_path), 0.0)), Failed)
    assert "a budget of 0.5 trainings" in last(search(str(tmp_path), 0.5)).message  # not the rounded '0.00'


def test_search_writes_only_into_a_new_or_empty_folder_outside_the_dataset(demo_root, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    for out, words in ((mine, "already holds files"), (demo_root / "search", "inside the dataset")):
        events = list(search(str(demo_root), 1.0, ["none"], out=str(out), **TINY))
        assert len(events) == 1 and isinstance(events[0], Failed) and words in events[0].message, events
    assert sorted(os.listdir(mine)) == ["keep.txt"] and not (demo_root / "search").exists()


def _cli(*args, home):
    env = {**os.environ, "BALANCELAB_HOME": str(home), "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_cli_recommend_and_bad_input(demo_root, tmp_path):
    ok = _cli("recommend", str(demo_root), "--json", home=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["strategy"] == "oversample+minority-augment"
    (tmp_path / "one" / "a").mkdir(parents=True)
    (tmp_path / "one" / "a" / "x.png").write_bytes((demo_root / "train" / "0" / os.listdir(demo_root / "train" / "0")[0]).read_bytes())
    for bad in (["recommend", str(tmp_path / "missing")], ["recommend", str(tmp_path / "one")],
                ["search", str(tmp_path / "one"), "--budget", "3"], ["search", str(demo_root), "--candidates", "nope"],
                ["search", str(demo_root), "--candidates", " , "]):
        res = _cli(*bad, home=tmp_path)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr, res.stderr


def test_a_comparison_and_a_search_say_which_split_their_scores_come_from():
    """The compare table and the search leaderboard printed bare numbers: they were validation
    scores on the images that also chose each checkpoint, and only comparison.json said so."""
    from balancelab.engine.experiments.compare import scored_on
    from balancelab.engine.experiments.recipe_search import SCORE, SCORE_LABEL

    assert "validation split, which also chose its checkpoint" in scored_on([{"evaluated_on": "val"}])
    assert scored_on([{"evaluated_on": "test"}, {"evaluated_on": "test"}]) == \
        "Scores on the test split, held out from training."
    assert scored_on([{"evaluated_on": 3}]) == ""  # read back from a crafted comparison.json: nothing said
    assert SCORE.startswith("val_") and SCORE_LABEL.startswith("validation")
