"""Long-tailed MNIST (train n_c = 5000 * 100^(-c/9), test as is): every strategy, several seeds.

    python bench/mnist_png.py --out /tmp/mnist_lt --long-tail 100
    python bench/long_tail.py /tmp/mnist_lt [--seeds 0 1 2] [--epochs 5] [--strategies none,focal,...]
        [--reference oversample+minority-augment] [--set KEY=VALUE ...]

``--set`` changes any other TrainConfig setting for every row (``--set val_fraction=0.05 --set
lr=0.002``); the rows and the summary name the settings they were trained with.

Prints a markdown table of balanced accuracy, macro-F1 and rarest-class (digit 9) recall on the
test split (each strategy also with post-hoc logit adjustment tau=1 by the training data's prior,
computed from the same runs' stored predictions), mean +- std over seeds, the mean wall time per run and its ratio to the reference
row's (the best fixed strategy), and writes bench/out/long_tail.json (one row per run) and
long_tail_summary.json (mean, std, seconds and time ratio per strategy). Runs in-process through
the same engine generator the CLI and GUI use; the decoded-image cache is shared by all runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time

import numpy as np


from balancelab.engine.train.config import TrainConfig
from balancelab.engine.core.events import Failed, Finished
from balancelab.engine.core.metrics import posthoc_log_prior
from balancelab.engine.results.inference import rescore
from balancelab.engine.train.run_folder import read_metrics, read_predictions
from balancelab.engine.train.run import train
from balancelab.engine.train.strategies import STRATEGIES, parse_strategy

# every registered component alone, then the combinations this bench measures on top of them
COMBINATIONS = ("mixup+balanced-softmax", "balanced-softmax+minority-augment", "balanced-sampler+minority-augment",
                "oversample+minority-augment", "oversample+minority-augment+minority-mixup",
                "oversample+minority-augment+remix", "oversample+minority-augment+crt", "minority-augment+crt")
REFERENCE = "oversample+minority-augment"  # the best fixed row before synthesis: time ratios are to it
DEFAULT = ",".join([*STRATEGIES, *COMBINATIONS])


def one_run(root: str, strategy: str, seed: int, epochs: int, model: str, out: str, settings: dict | None = None) -> dict:
    cfg = TrainConfig(data=root, out=out, model=model, strategy=strategy, epochs=epochs, seed=seed, device="cpu",
                      **(settings or {}))
    t = time.perf_counter()
    for ev in train(cfg):
        if isinstance(ev, Failed):
            raise RuntimeError(f"{strategy} seed {seed}: {ev.message}")
        if isinstance(ev, Finished):
            m = ev.result.metrics
    rare = m["per_class"][-1]["recall"]
    row = {"strategy": strategy, "seed": seed, "balanced_accuracy": m["balanced_accuracy"], "macro_f1": m["macro_f1"],
           "rarest_recall": rare, "accuracy": m["accuracy"], "seconds": time.perf_counter() - t, "run_dir": out,
           "settings": settings or {}, "recall_per_class": [c["recall"] for c in m["per_class"]]}
    # post-hoc logit adjustment of the same run by the training data's prior, no retraining
    paths, classes, y_true, _, probs = read_predictions(out)
    prior = posthoc_log_prior(read_metrics(out), len(classes))  # metrics.json: every run kind, ensembles too
    adj = rescore(probs, y_true, classes, prior, 1.0)
    row["posthoc_tau1"] = {"balanced_accuracy": adj["balanced_accuracy"], "macro_f1": adj["macro_f1"],
                           "rarest_recall": adj["per_class"][-1]["recall"],
                           "recall_per_class": [c["recall"] for c in adj["per_class"]]}
    return row


def parse_settings(pairs: list[str]) -> dict:
    """``KEY=VALUE`` texts -> TrainConfig keyword arguments, each value typed like the field's default."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in fields or key in ("data", "out", "model", "strategy", "epochs", "seed", "device"):
            raise SystemExit(f"error: --set takes KEY=VALUE for another TrainConfig setting, not {pair!r}")
        default = fields[key].default
        try:
            if isinstance(default, bool):
                value = text.lower() in ("1", "true", "yes", "on")
            elif isinstance(default, int):
                value = int(text)
            elif isinstance(default, float):
                value = float(text)
            else:
                value = text
        except ValueError:
            raise SystemExit(f"error: --set {key} needs a {type(default).__name__}, not {text!r}") from None
        out[key] = value
    return out


def fmt(values) -> str:
    values = np.asarray(values) * 100
    return f"{values.mean():.2f} ± {values.std():.2f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--model", default="mnist-classic")
    ap.add_argument("--strategies", default=DEFAULT)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out"))
    ap.add_argument("--reference", default=REFERENCE, help="row whose mean wall time the others are divided by")
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                    help="another TrainConfig setting for every row (repeatable)")
    args = ap.parse_args()
    parse_strategy(args.reference)
    settings = parse_settings(args.settings)
    os.makedirs(args.out, exist_ok=True)
    runs_root = tempfile.mkdtemp(prefix="bl-lt-", dir=args.out)
    rows = []
    for strategy in args.strategies.split(","):
        for seed in args.seeds:
            row = one_run(args.root, strategy, seed, args.epochs, args.model, os.path.join(runs_root, f"{strategy}-{seed}"),
                          settings)
            rows.append(row)
            adj = row["posthoc_tau1"]
            print(f"{strategy:<40} seed {seed}: bal_acc {row['balanced_accuracy']:.4f} macro_f1 {row['macro_f1']:.4f} "
                  f"rare_recall {row['rarest_recall']:.4f}; post-hoc tau=1 bal_acc {adj['balanced_accuracy']:.4f} "
                  f"rare_recall {adj['rarest_recall']:.4f} ({row['seconds']:.0f}s)", flush=True)
            with open(os.path.join(args.out, "long_tail.json"), "w", encoding="utf-8") as fh:
                json.dump(rows, fh, indent=2)
    if settings:
        print("\nsettings besides the defaults: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    print(table(rows, args.strategies.split(","), args.reference))
    with open(os.path.join(args.out, "long_tail_summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary(rows, args.strategies.split(","), args.reference), fh, indent=2)


def summary(rows: list[dict], strategies: list[str], reference: str) -> list[dict]:
    """Mean and std per strategy, with the mean wall time and its ratio to the reference row's."""
    ref = [r["seconds"] for r in rows if r["strategy"] == reference]
    ref_seconds = float(np.mean(ref)) if ref else None
    out = []
    for strategy in strategies:
        sel = [r for r in rows if r["strategy"] == strategy]
        if not sel:
            continue
        seconds = float(np.mean([r["seconds"] for r in sel]))
        entry = {"strategy": strategy, "seeds": len(sel), "seconds": seconds,
                 "time_ratio": seconds / ref_seconds if ref_seconds else None, "settings": sel[0].get("settings", {})}
        for key in ("balanced_accuracy", "macro_f1", "rarest_recall"):
            values = np.array([r[key] for r in sel])
            entry[key] = {"mean": float(values.mean()), "std": float(values.std())}
        out.append(entry)
    return out


def table(rows: list[dict], strategies: list[str], reference: str) -> str:
    lines = [f"\n| strategy | balanced accuracy % | macro-F1 % | rarest-class recall % | seconds per run | "
             f"time / {reference} |", "|---|---|---|---|---|---|"]
    for entry in summary(rows, strategies, reference):
        strategy = entry["strategy"]
        sel = [r for r in rows if r["strategy"] == strategy]
        ratio = f"{entry['time_ratio']:.2f}x" if entry["time_ratio"] else "-"
        lines.append(f"| {strategy} | {fmt([r['balanced_accuracy'] for r in sel])} | {fmt([r['macro_f1'] for r in sel])} | "
                     f"{fmt([r['rarest_recall'] for r in sel])} | {entry['seconds']:.0f} | {ratio} |")
        adj = [r["posthoc_tau1"] for r in sel if "posthoc_tau1" in r]
        if adj:  # the same runs: no extra training time
            lines.append(f"| {strategy} + post-hoc tau=1 | {fmt([a['balanced_accuracy'] for a in adj])} | "
                         f"{fmt([a['macro_f1'] for a in adj])} | {fmt([a['rarest_recall'] for a in adj])} | "
                         f"{entry['seconds']:.0f} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
