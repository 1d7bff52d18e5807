"""The text (non-JSON) outputs say which split a figure comes from and what was not measured."""
from __future__ import annotations

from balancelab.engine.cli.data_commands import format_scan_table
from balancelab.engine.cli.training_commands import print_metrics_table
from balancelab.engine.core.metrics import HEADLINE


def test_scan_table_leads_with_the_training_split_imbalance():
    summary = {"root": "/d", "layout": "split", "classes": [{"name": "a", "count": 60}, {"name": "b", "count": 11}],
               "splits": {"test": [{"name": "a", "count": 10}, {"name": "b", "count": 10}],
                          "train": [{"name": "a", "count": 50}, {"name": "b", "count": 1}]},
               "total_images": 71, "imbalance_ratio": 60 / 11, "training_split": "train",
               "imbalance_ratio_per_split": {"test": 1.0, "train": 50.0}, "problems": []}
    line = next(x for x in format_scan_table(summary).splitlines() if "Imbalance ratio" in x)
    assert line.endswith("train 50.0:1, test 1.0:1, all splits pooled 5.5:1")


def test_scan_table_keeps_one_name_on_one_line():
    import os

    odd = ["train/a/new\nline.png", "train/a/tab\there.png", os.fsdecode(b"train/a/caf\xe9.png")]
    summary = {"root": "/d", "layout": "flat", "classes": [{"name": "a\nb", "count": 3}],
               "splits": {"all": [{"name": "a\nb", "count": 3}]}, "total_images": 3, "imbalance_ratio": 1.0,
               "training_split": "all", "imbalance_ratio_per_split": {"all": 1.0},
               "problems": [{"path": p, "reason": "truncated"} for p in odd]}
    text = format_scan_table(summary)
    text.encode("utf-8")  # printable on any UTF-8 terminal
    problem_lines = [x for x in text.splitlines() if x.endswith(": truncated")]
    assert problem_lines == ["  train/a/new\\nline.png: truncated", "  train/a/tab\\there.png: truncated",
                             "  train/a/caf\\udce9.png: truncated"]
    assert any(x.startswith("  a\\nb ") for x in text.splitlines())
    summary["problems"] = [{"path": "train/a/x.png", "reason": f"identical content to {odd[2]}\nsecond line"}]
    reason_line = format_scan_table(summary).splitlines()[-1]  # a reason naming an odd file stays one line
    reason_line.encode("utf-8")
    assert reason_line == "  train/a/x.png: identical content to train/a/caf\\udce9.png\\nsecond line"


def test_metrics_table_names_classes_without_evaluation_images(capsys):
    row = {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    metrics = {"evaluated_on": "test", "n_evaluated": 3, **{key: 0.5 for key in HEADLINE},
               "per_class": [{"name": "cat", **row, "support": 3}, {"name": "dog", **row, "support": 0}]}
    print_metrics_table(metrics)
    out = capsys.readouterr().out
    assert "No test images for: dog (their scores are not measured)" in out and "cat (" not in out


def test_help_texts_say_defaults_in_words_not_python():
    """Every command in the top-level list ended in "(default: none)", and list defaults read
    "(default: [])" or "(default: [1, 3, 5, 7, 9, 15, 25])"."""
    from balancelab.engine.cli.main import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    texts = {"": parser.format_help(), **{name: sub.format_help() for name, sub in commands.items()}}
    for name, text in texts.items():
        flat = " ".join(text.split())
        assert "(default: [" not in flat and "(default: ()" not in flat, name
    assert "(default: none)" not in " ".join(texts[""].split())  # a command is chosen, not defaulted
    assert "(default: 1,3,5,7,9,15,25)" in " ".join(texts["knn"].split())  # as --k is typed


def test_evaluate_says_when_it_scores_the_runs_own_training_images(tiny_run, demo_root, tmp_path, capsys):
    """`evaluate --split train` (or `all`) scored the images the run learned from, reported like
    held-out figures."""
    import json
    import shutil

    from balancelab.engine.cli.main import main

    assert main(["evaluate", "--run", str(tiny_run), "--data", str(demo_root), "--split", "train"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "the run's training images" in err and "flatter the model" in err
    assert main(["evaluate", "--run", str(tiny_run), "--data", str(demo_root), "--json"]) == 0  # the test split
    out, err = capsys.readouterr()
    metrics = json.loads(out)
    assert metrics["evaluated_on"] == "test" and metrics["n_train_images_of_the_run"] == 0 and "flatter" not in err
    other = tmp_path / "other"  # the same layout in another folder: its files are not the run's
    shutil.copytree(demo_root, other)
    assert main(["evaluate", "--run", str(tiny_run), "--data", str(other), "--split", "train"]) == 0
    assert "flatter" not in capsys.readouterr().err
