"""``ensemble --runs A,B --out DIR``: a run folder that evaluate and predict accept; bad members,
a damaged member reference and bagging settings are one ``error:`` line with exit 2."""
from __future__ import annotations

import json
import shutil

from balancelab.engine.cli.main import main


def run_cli(capsys, argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_ensemble_command_writes_a_run_that_evaluate_and_predict_use(capsys, tmp_path, tiny_run, demo_root):
    code, out, err = run_cli(capsys, ["ensemble", "--runs", tiny_run, "--out", tmp_path / "ens", "--weighted",
                                      "--data", demo_root])
    assert code == 0, err
    want = json.loads((tiny_run / "metrics.json").read_text())["balanced_accuracy"]
    assert f"the averaged model on {demo_root} (test" in out and f"balanced accuracy {want:.4f}" in out.split("averaged")[1]
    assert "Balanced accuracy" in out or "balanced" in out.lower()
    assert "member 1-run: weight 1.000" in out
    one = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert one["confusion_matrix"] == json.loads((tiny_run / "metrics.json").read_text())["confusion_matrix"]
    code, out, err = run_cli(capsys, ["evaluate", "--run", tmp_path / "ens", "--data", demo_root, "--json"])
    assert code == 0, err
    assert json.loads(out)["confusion_matrix"] == one["confusion_matrix"]
    image = next((demo_root / "test").rglob("*.png"))
    code, out, err = run_cli(capsys, ["predict", "--run", tmp_path / "ens", image, "--json"])
    assert code == 0 and len(json.loads(out)[0]["top"]) == 3, err


def test_bad_ensembles_are_one_error_line(capsys, tmp_path, tiny_run):
    cases = {
        "missing run": (["ensemble", "--runs", f"{tiny_run},{tmp_path / 'nope'}", "--out", tmp_path / "a"], "does not exist"),
        "twice": (["ensemble", "--runs", f"{tiny_run},{tiny_run}", "--out", tmp_path / "b"], "twice"),
        "not a run": (["ensemble", "--runs", tmp_path, "--out", tmp_path / "c"], "not a BalanceLab run"),
        "bagging k": (["train", "--data", tmp_path, "--out", tmp_path / "d", "--strategy", "balanced-bagging",
                       "--bagging-members", "0"], "bagging members"),
        "bagging fraction": (["train", "--data", tmp_path, "--out", tmp_path / "e", "--strategy", "balanced-bagging",
                              "--bagging-fraction", "2"], "bagging fraction"),
    }
    for name, (argv, words) in cases.items():
        code, out, err = run_cli(capsys, argv)
        assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("error:"), (name, err)
        assert words in err, (name, err)


def test_damaged_member_reference_is_one_error_line(capsys, tmp_path, tiny_run, demo_root):
    assert run_cli(capsys, ["ensemble", "--runs", tiny_run, "--out", tmp_path / "ens"])[0] == 0
    spec_path = tmp_path / "ens" / "ensemble.json"
    spec = json.loads(spec_path.read_text())
    spec["members"][0]["path"] = "members/../../../etc"
    spec_path.write_text(json.dumps(spec))
    code, out, err = run_cli(capsys, ["evaluate", "--run", tmp_path / "ens", "--data", demo_root])
    assert code == 2 and err.count("\n") == 1 and "ensemble.json" in err, err
    shutil.rmtree(tmp_path / "ens")
