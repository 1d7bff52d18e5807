"""``train``'s flags are TrainConfig's settings: one flag per setting, its help from SETTING_HELP,
and every flag lands in the config it names (a setting added to config.py is a flag without an
edit of the parser)."""
from __future__ import annotations

import argparse
import dataclasses

import pytest

from balancelab.engine.cli.training_parsers import add_config_arguments
from balancelab.engine.train.config import BOOL_FIELDS, SETTING_CHOICES, SETTING_HELP, STRING_FIELDS, TrainConfig

SETTINGS = [f for f in dataclasses.fields(TrainConfig) if f.name != "extra"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_config_arguments(p, TrainConfig(data="", out=""))
    return p


def flag_of(name: str, default) -> str:
    flag = name.replace("_", "-")
    return f"--no-{flag}" if default is True else f"--{flag}"


def test_every_setting_has_help_words() -> None:
    assert {f.name for f in SETTINGS} == set(SETTING_HELP)


def test_type_lists_follow_the_annotations() -> None:
    assert set(BOOL_FIELDS) == {"group_near_duplicates", "amp", "channels_last", "compile", "resume", "deskew"}
    assert {"data", "out", "model", "strategy", "pretrained", "sampling_strategy", "device"} <= set(STRING_FIELDS)
    assert not set(STRING_FIELDS) & set(BOOL_FIELDS)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda f: f.name)
def test_each_setting_is_a_flag_that_reaches_the_config(setting) -> None:
    defaults = TrainConfig(data="", out="")
    default = getattr(defaults, setting.name)
    base = ["--data", "d", "--out", "o"]
    if setting.name in ("data", "out"):
        argv = ["--data" if setting.name == "data" else "--out", "given"] + (
            ["--out", "o"] if setting.name == "data" else ["--data", "d"])
        expected = "given"
    elif setting.type == "bool":
        argv, expected = base + [flag_of(setting.name, default)], not default
    elif setting.name in SETTING_CHOICES:
        expected = next(c for c in SETTING_CHOICES[setting.name] if c != default)
        argv = base + [flag_of(setting.name, default), expected]
    elif setting.type == "int":
        argv, expected = base + [flag_of(setting.name, default), "7"], 7
    elif setting.type == "float":
        argv, expected = base + [flag_of(setting.name, default), "0.125"], 0.125
    else:
        argv, expected = base + [flag_of(setting.name, default), "given"], "given"
    args = parser().parse_args(argv)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None})
    assert getattr(cfg, setting.name) == expected
    untouched = {f.name for f in SETTINGS} - {setting.name, "data", "out"}
    assert all(getattr(cfg, n) == getattr(defaults, n) for n in untouched)


def test_help_shows_the_config_words() -> None:
    text = parser().format_help().replace("\n", " ")
    text = " ".join(text.split())
    for name in ("schedule", "bagging_fraction", "resume"):
        assert " ".join(SETTING_HELP[name].split())[:60] in text
    assert "--no-amp" in text and "--no-channels-last" in text and "--compile" in text


def test_choices_are_refused_outside_the_vocabulary() -> None:
    with pytest.raises(argparse.ArgumentError):
        parser().parse_args(["--data", "d", "--out", "o", "--optimizer", "lbfgs"])


@pytest.mark.parametrize("command", [["compare", "--strategies", "none"], ["label-issues"]])
def test_compare_and_label_issues_train_deskewed_when_asked(command):
    from balancelab.engine.cli.main import build_parser
    from balancelab.engine.cli.training_commands import _small_config

    argv = [*command, "--data", "d", "--out", "o"]
    assert _small_config(build_parser().parse_args(argv))["deskew"] is False
    assert _small_config(build_parser().parse_args([*argv, "--deskew"]))["deskew"] is True
