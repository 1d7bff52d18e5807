"""Curation quality on planted truth: label issues and near duplicates.

    python bench/curation_quality.py --mnist ../shared/data/mnist --work /tmp/cq
    python bench/curation_quality.py --source /some/ImageFolder --per-class 300 --work /tmp/cq --part labels

Label issues: ``--per-class`` images of every class (MNIST train or ``--source``), ``--flip``
of them moved into a wrong class (seeded); ``find_label_issues`` at its defaults (or the
options given), then every cleanlab filter and ranking on the *same* out-of-fold probabilities:
precision, recall, precision@N (N = planted flips), ranking AUROC, time.

Near duplicates: ``--dup-images`` images (MNIST test or ``--source``) with ``--exact`` byte
copies and ``--near`` near copies (resized to 32 px and back, JPEG 60, 1-pixel shift, +10 %
brightness); ``find_duplicates`` at its defaults; pair precision and recall per kind, time.
"""
from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from planting import flip_labels, plant_copies, sample_imagefolder  # bench/ is the script's own folder


def write_mnist_subset(mnist: str, split: str, dst: str, per_class: int | None, total: int | None, seed: int) -> None:
    from mnist_png import load_mnist
    from PIL import Image

    images, labels = load_mnist(Path(mnist), split)
    rng = np.random.default_rng(seed)
    if per_class:
        idx = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(10)])
    else:
        idx = rng.permutation(len(labels))[:total]
    for i in sorted(idx):
        folder = os.path.join(dst, str(int(labels[i])))
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(images[i], "L").save(os.path.join(folder, f"{i:05d}.png"), compress_level=1)


def label_metrics(flagged: np.ndarray, quality: np.ndarray, truth: np.ndarray) -> dict:
    from sklearn.metrics import roc_auc_score

    n = int(truth.sum())
    top = np.argsort(quality, kind="stable")[:n]
    tp = int((flagged & truth).sum())
    return {"flagged": int(flagged.sum()), "precision": tp / max(1, int(flagged.sum())), "recall": tp / max(1, n),
            "p_at_n": float(truth[top].mean()), "auroc": float(roc_auc_score(truth, -quality))}


def oof_from_folds(out: str, data: str, paths: list[str], tta: str) -> np.ndarray:
    """Out-of-fold probabilities recomputed from the fold checkpoints with another TTA setting:
    the sharpening gain measured on the very same models."""
    import json

    from balancelab.engine.data.decode_cache import decode_images
    from balancelab.engine.core.events import Finished
    from balancelab.engine.experiments.label_issues import predict_views
    from balancelab.engine.results.inference import load_run_model

    where = {p: i for i, p in enumerate(paths)}
    probs = None
    for fold in sorted(d for d in os.listdir(out) if d.startswith("fold")):
        model, state = load_run_model(os.path.join(out, fold))
        with open(os.path.join(out, fold, "split.json"), encoding="utf-8") as fh:
            held = [p for p, _ in json.load(fh)["test"]]
        arr = [e for e in decode_images([os.path.join(data, p) for p in held], int(state["in_channels"]),
                                        int(state["image_size"])) if isinstance(e, Finished)][0].result.array
        pr = predict_views(model, np.asarray(arr), tta)
        probs = np.zeros((len(paths), pr.shape[1])) if probs is None else probs
        probs[[where[p] for p in held]] += pr
    return probs


def bench_labels(args, work: str) -> None:
    """Plant flips, run label-issues, report; with --report-only, report on the last run in --work."""
    import json

    from balancelab.engine.core.events import Failed, Finished
    from balancelab.engine.experiments.label_issues import find_label_issues

    data, out, truth_file = (os.path.join(work, n) for n in ("labels", "labels-out", "labels-truth.json"))
    options = {k: v for k, v in (("model", args.model), ("epochs", args.epochs), ("tta", args.tta), ("lr", args.lr),
                                 ("batch_size", args.batch_size), ("repeats", args.repeats), ("device", args.device))
               if v is not None}
    seconds = None
    if not args.report_only:
        shutil.rmtree(data, ignore_errors=True)
        if args.source:
            sample_imagefolder(args.source, data, args.per_class, args.seed)
        else:
            write_mnist_subset(args.mnist, "train", data, args.per_class, None, args.seed)
        with open(truth_file, "w", encoding="utf-8") as fh:
            json.dump(sorted(flip_labels(data, args.flip, args.seed)), fh)
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        final = None
        for ev in find_label_issues(data, out, folds=args.folds, **options):
            if isinstance(ev, (Finished, Failed)):
                final = ev
        seconds = time.perf_counter() - t0
        if not isinstance(final, Finished):
            sys.exit(f"label-issues failed: {getattr(final, 'message', final)}")
    with open(truth_file, encoding="utf-8") as fh:
        flipped = set(json.load(fh))
    with open(os.path.join(out, "noise_matrix.json"), encoding="utf-8") as fh:
        res = json.load(fh)
    report_labels(data, out, flipped, res, options, seconds)


def report_labels(data: str, out: str, flipped: set[str], res: dict, options: dict, seconds: float | None) -> None:
    from balancelab.engine.experiments.label_ranking import DEFAULT_FILTER, DEFAULT_RANKING, FILTERS, RANKINGS, rank_label_issues
    from balancelab.engine.experiments.oof_store import read_oof

    _, paths, labels, probs = read_oof(out, data)
    print(f"\n== label issues: {len(paths)} images, {len(flipped)} planted flips, options {options or 'defaults'}, "
          f"{res['folds']} folds, tta {res['tta']}, repeats {res['repeats']}: "
          + (f"{seconds:.1f} s" if seconds is not None else "(reported from the last run)"))
    truth = np.array([p in flipped for p in paths])
    acc = float((probs.argmax(1) == labels)[~truth].mean())
    print(f"out-of-fold accuracy on unflipped images: {acc:.4f}")
    print(f"{'filter':<26} {'ranking':<28} {'flagged':>7} {'precision':>9} {'recall':>7} {'p@N':>6} {'AUROC':>7}")
    for filter_by, rank_by in itertools.product(FILTERS, RANKINGS):
        s = rank_label_issues(labels, probs, filter_by, rank_by)
        m = label_metrics(s["flagged"], s["quality"], truth)
        mark = "  <- default" if (filter_by, rank_by) == (DEFAULT_FILTER, DEFAULT_RANKING) else ""
        if (filter_by, rank_by) == (res["filter_by"], res["rank_by"]) and not mark:
            mark = "  <- the run's choice"
        if rank_by == RANKINGS[0] or mark:
            print(f"{filter_by:<26} {rank_by:<28} {m['flagged']:>7} {m['precision']:>9.3f} {m['recall']:>7.3f} "
                  f"{m['p_at_n']:>6.3f} {m['auroc']:>7.4f}{mark}")
    for rank_by in RANKINGS[1:]:
        s = rank_label_issues(labels, probs, FILTERS[0], rank_by)
        m = label_metrics(s["flagged"], s["quality"], truth)
        print(f"{'(ranking only)':<26} {rank_by:<28} {'':>7} {'':>9} {'':>7} {m['p_at_n']:>6.3f} {m['auroc']:>7.4f}")
    s = rank_label_issues(labels, probs, DEFAULT_FILTER, DEFAULT_RANKING, require_disagreement=False)
    m = label_metrics(s["flagged"], s["quality"], truth)
    print(f"default filter without the given-is-top-prediction rule: flagged {m['flagged']}, precision {m['precision']:.3f}, "
          f"recall {m['recall']:.3f}")
    if res["repeats"] == 1:
        for tta in ("none", "shift"):
            p = oof_from_folds(out, data, paths, tta)
            s = rank_label_issues(labels, p, DEFAULT_FILTER, DEFAULT_RANKING)
            m = label_metrics(s["flagged"], s["quality"], truth)
            print(f"same fold models, tta {tta:<5}: flagged {m['flagged']}, precision {m['precision']:.3f}, recall {m['recall']:.3f}, "
                  f"p@N {m['p_at_n']:.3f}, AUROC {m['auroc']:.4f}")


def pair_set(groups) -> set[frozenset]:
    return {frozenset(p) for g in groups for p in itertools.combinations(g.paths, 2)}


def bench_duplicates(args, work: str) -> None:
    from balancelab.engine.core.events import Failed, Finished
    from balancelab.engine.data.duplicates import GRADES, find_duplicates
    from balancelab.engine.data.scanner import scan_sync

    data = os.path.join(work, "dups")
    shutil.rmtree(data, ignore_errors=True)
    if args.source:
        sample_imagefolder(args.source, data, max(1, args.dup_images // 10), args.seed + 1)
    else:
        write_mnist_subset(args.mnist, "test", data, None, args.dup_images, args.seed + 1)
    truth = plant_copies(data, args.exact, args.near, args.seed + 2)
    planted = {frozenset((a, b)): kind for a, b, kind in truth}
    options = {"threshold": args.threshold} if args.threshold is not None else {}
    t0 = time.perf_counter()
    result = scan_sync(data)
    t_scan = time.perf_counter() - t0
    if args.run:
        from balancelab.engine.results.embeddings import find_duplicates_with_run

        work = find_duplicates_with_run(result, args.run, **options)
        options["run"] = args.run
    else:
        work = find_duplicates(result, **options)
    final = [ev for ev in work if isinstance(ev, (Finished, Failed))][-1]
    if isinstance(final, Failed):
        sys.exit(f"duplicates failed: {final.message}")
    groups = final.result
    seconds = time.perf_counter() - t0
    found = pair_set(groups)
    hits = found & set(planted)
    print(f"\n== duplicates: {len(result.images)} images, {len(planted)} planted copies, options {options or 'defaults'}: "
          f"{seconds:.1f} s (scan {t_scan:.1f} s)")
    print(f"pairs reported {len(found)}, planted found {len(hits)}: recall {len(hits) / len(planted):.3f}, "
          f"precision {len(hits) / max(1, len(found)):.3f}, unplanted pairs {len(found - set(planted))}")
    for kind in ("exact", "resize32", "jpeg60", "shift1", "bright10"):
        k_all = [p for p, k in planted.items() if k == kind]
        if k_all:
            print(f"  {kind:<9} recall {sum(p in found for p in k_all) / len(k_all):.3f} ({len(k_all)})")
    for grade in GRADES:
        g_pairs = pair_set([g for g in groups if g.grade == grade])
        print(f"  grade {grade:<10} pairs {len(g_pairs):>4}, planted {len(g_pairs & set(planted)):>4}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", default="../shared/data/mnist", help="folder with the four MNIST idx .gz files")
    ap.add_argument("--source", default=None, help="any ImageFolder to sample from instead of MNIST")
    ap.add_argument("--work", required=True, help="scratch folder (recreated)")
    ap.add_argument("--part", choices=("labels", "duplicates", "both"), default="both")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-class", dest="per_class", type=int, default=300)
    ap.add_argument("--flip", type=float, default=0.05)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--model", default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--tta", default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--report-only", dest="report_only", action="store_true",
                    help="labels: report on the last run in --work (other filters, TTA on the same fold models)")
    ap.add_argument("--dup-images", dest="dup_images", type=int, default=5000)
    ap.add_argument("--exact", type=int, default=100)
    ap.add_argument("--near", type=int, default=100)
    ap.add_argument("--threshold", type=int, default=None)
    ap.add_argument("--run", default=None, help="trained run folder for embedding similarity")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    if args.part in ("labels", "both"):
        bench_labels(args, args.work)
    if args.part in ("duplicates", "both"):
        bench_duplicates(args, args.work)


if __name__ == "__main__":
    main()
