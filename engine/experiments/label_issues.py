"""Find likely mislabeled images: k-fold cross-validated training gives out-of-fold
probabilities for every image; cleanlab flags and ranks them (engine/experiments/label_ranking.py).

BalanceLab's part is the probabilities: each fold's best checkpoint predicts its held-out images
at full precision (not the 6-decimal predictions.csv), optionally averaged over 1-pixel shifts
(test-time augmentation) and over several cross-validation repeats with other seeds. They are
written as ``oof_probs.npy`` + ``oof_index.json`` and can be re-ranked later without retraining.
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from balancelab.engine.core.atomic import write_csv_atomic, write_json_atomic
from balancelab.engine.core.events import EventStream, Failed, Finished, Progress, RunStep, StopToken
from balancelab.engine.data.image_bank import decode_split
from balancelab.engine.data.scanner import scan_for_task
from balancelab.engine.data.splits import VAL_FRACTION, DataSplits, SampleList, make_splits, stratified_holdout
from balancelab.engine.experiments.compare import output_folder_problem
from balancelab.engine.experiments.label_ranking import (DEFAULT_FILTER, DEFAULT_FOLDS, DEFAULT_RANKING, DEFAULT_REPEATS,
                                                         DEFAULT_TTA, LABEL_ISSUE_BATCH, LABEL_ISSUE_EPOCHS, LABEL_ISSUE_LR,
                                                         LABEL_ISSUE_MODEL, TTA_MODES, LabelRankingError,
                                                         rank_label_issues)
from balancelab.engine.experiments.oof_store import OofError, read_oof, write_oof
from balancelab.engine.results.inference import load_run_model
from balancelab.engine.train.checkpoints import CheckpointError
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.train.run import train
from balancelab.engine.train.run_folder import RunError

SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
CSV_HEADER = ["rank", "path", "given", "suggested", "predicted", "quality", "self_confidence", "flagged"]


def predict_views(model, array: np.ndarray, tta: str, batch_size: int = 512) -> np.ndarray:
    """Softmax probabilities of uint8 N x H x W x C images, averaged over 1-pixel shifts
    (edge-replicated) when ``tta == "shift"``: a sharper estimate than one view."""
    import torch
    import torch.nn.functional as F

    shifts = SHIFTS if tta == "shift" else SHIFTS[:1]
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(array), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(array[start:start + batch_size])).to(device)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            h, w = x.shape[2:]
            padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
            acc = 0
            for dy, dx in shifts:
                view = padded[:, :, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                acc = acc + torch.softmax(model(view).float(), dim=1)
            out.append((acc / len(shifts)).cpu().numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 0))


def _pool(result, seed: int):
    base = make_splits(result, VAL_FRACTION, seed)
    if base.val_source == "train":
        return base.classes, SampleList(base.train.paths + base.val.paths,
                                        np.concatenate([base.train.labels, base.val.labels]))
    return base.classes, base.train


def cross_validated_probs(data: str, out: str, result, folds: int, stop: StopToken, seed: int, repeats: int,
                          tta: str, config: dict) -> Iterator:
    """Yield Progress; return (classes, pool, probs, fold_of) or None when stopped/failed (a
    Failed event was yielded)."""
    from sklearn.model_selection import StratifiedKFold

    classes, pool = _pool(result, seed)
    digests = {img.path: img.digest for img in result.images}
    probs = np.zeros((len(pool), len(classes)))
    fold_of = np.zeros(len(pool), dtype=np.int64)
    total = folds * repeats
    for r in range(repeats):
        skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + 1000 * r)
        for f, (tr, te) in enumerate(skf.split(np.zeros(len(pool)), pool.labels)):
            step = r * folds + f
            if stop.requested:
                return None
            yield Progress("cross-validation", step, total, f"fold {f + 1}/{folds}" + (f", repeat {r + 1}/{repeats}" if repeats > 1 else ""))
            train_part = pool.subset(tr)
            tr_i, va_i = stratified_holdout(train_part, [digests[p] for p in train_part.paths], VAL_FRACTION, seed + step)
            splits = DataSplits(classes, train_part.subset(tr_i), train_part.subset(va_i), pool.subset(te), "train")
            run_dir = os.path.join(out, f"fold{f + 1}" + (f"-r{r + 1}" if repeats > 1 else ""))
            cfg = TrainConfig(data=data, out=run_dir, seed=seed + step, **config)
            finished = None
            label = f"fold {f + 1}" + (f", repeat {r + 1}" if repeats > 1 else "")
            for ev in train(cfg, stop, scan_result=result, splits=splits):
                if isinstance(ev, Failed):
                    yield Failed(f"fold {f + 1}: {ev.message}", ev.detail)
                    return None
                if isinstance(ev, Finished):
                    finished = ev
                yield RunStep(label, step, total, ev)  # per-epoch progress of every fold model
            if finished is None or not finished.result.metrics:
                return None
            try:
                model, state = load_run_model(run_dir, "best", "cpu" if cfg.device == "auto" else cfg.device)
            except (RunError, CheckpointError) as exc:
                yield Failed(f"fold {f + 1}: {exc}")
                return None
            held_out = pool.subset(te)
            bank = None
            for ev in decode_split(data, held_out, int(state["in_channels"]), int(state["image_size"]),
                                   stop, 0, "decoding", []):
                if isinstance(ev, Finished):
                    bank = ev.result
                else:
                    yield ev
            if bank is None:
                return None
            where = {p: i for i, p in enumerate(pool.paths)}
            rows = np.array([where[p] for p in bank.paths], dtype=np.int64)
            probs[rows] += predict_views(model, np.asarray(bank.array), tta)
            fold_of[rows] = f
    yield Progress("cross-validation", total, total)
    return classes, pool, probs / repeats, fold_of


def ranking_rows(classes: list[str], paths: list[str], labels: np.ndarray, scores: dict) -> list[dict]:
    rows = []
    for rank, i in enumerate(scores["order"], start=1):
        rows.append({"rank": rank, "path": paths[i], "given": classes[labels[i]],
                     "suggested": classes[scores["suggested"][i]], "predicted": classes[scores["predicted"][i]],
                     "quality": float(scores["quality"][i]), "self_confidence": float(scores["self_confidence"][i]),
                     "flagged": bool(scores["flagged"][i])})
    return rows


MIN_TRUSTED_OOF_ACCURACY = 0.75  # below this the probabilities, not the labels, explain most disagreements
MAX_TRUSTED_FLAGGED_SHARE = 0.25


def trust(labels: np.ndarray, probs: np.ndarray, scores: dict) -> dict:
    """How far the flags can be trusted: the out-of-fold accuracy and, when it is weak, a warning."""
    accuracy = float((np.asarray(probs).argmax(axis=1) == np.asarray(labels)).mean()) if len(labels) else 0.0
    flagged = float(np.mean(scores["flagged"])) if len(labels) else 0.0
    warning = None
    if accuracy < MIN_TRUSTED_OOF_ACCURACY or flagged > MAX_TRUSTED_FLAGGED_SHARE:
        warning = (f"out-of-fold accuracy is {accuracy:.1%} and {flagged:.0%} of the images are flagged: the fold "
                   "models are too weak for the flags to be trusted; train them longer or with a stronger model")
    return {"oof_accuracy": accuracy, "flagged_share": flagged, "trust_warning": warning}


def write_ranking(out: str, classes: list[str], paths: list[str], labels: np.ndarray, scores: dict,
                  settings: dict) -> dict:
    """label_issues.csv (every image, most suspicious first) and noise_matrix.json; the result dict."""
    rows = ranking_rows(classes, paths, labels, scores)
    csv_path = os.path.join(out, "label_issues.csv")
    write_csv_atomic(csv_path, CSV_HEADER, ([r[h] for h in CSV_HEADER] for r in rows))
    joint = scores["confident_joint"].tolist()
    write_json_atomic(os.path.join(out, "noise_matrix.json"), {"classes": classes, "confident_joint": joint,
                                                               "rows": "given label", "columns": "suspected true label",
                                                               **settings})
    return {"csv": csv_path, "ranking": rows, "classes": classes, "confident_joint": joint, **settings}


def find_label_issues(data: str, out: str, folds: int = DEFAULT_FOLDS, stop: StopToken | None = None, seed: int = 0,
                      filter_by: str = DEFAULT_FILTER, rank_by: str = DEFAULT_RANKING, repeats: int = DEFAULT_REPEATS,
                      tta: str = DEFAULT_TTA, from_probs: str | None = None, **config) -> EventStream[dict | None]:
    """Yield Progress events; end with Finished({"csv", "ranking", "confident_joint", "probs", ...})
    or Failed. ``from_probs`` (an oof_probs.npy or its folder) skips training and re-ranks.
    ``config`` are TrainConfig fields for the fold models (default: LABEL_ISSUE_MODEL, ...)."""
    stop = stop or StopToken()
    config = {"model": LABEL_ISSUE_MODEL, "epochs": LABEL_ISSUE_EPOCHS, "lr": LABEL_ISSUE_LR,
              "batch_size": LABEL_ISSUE_BATCH, **config}
    if tta not in TTA_MODES:
        yield Failed(f"unknown test-time augmentation '{tta}'; choose one of: {', '.join(TTA_MODES)}")
        return
    problem = output_folder_problem(out, data, "label-issue")  # never a file of the user's replaced
    if problem is not None:
        yield Failed(problem)
        return
    if from_probs is not None:
        try:
            classes, paths, labels, probs = read_oof(from_probs, data)
        except OofError as exc:
            yield Failed(str(exc))
            return
        gone = [p for p in paths if not os.path.isfile(os.path.join(data, p))]
        if gone:  # re-ranked, they would name files that moved (a relabel) or belong to another dataset
            yield Failed(f"{len(gone)} of the {len(paths)} images of {from_probs} are no longer in {data} (e.g. "
                         f"{gone[0]}: moved, relabelled or excluded since, or another dataset); compute the "
                         "probabilities again without --from-probs")
            return
        folds_used, probs_path, tta, repeats = None, from_probs, None, None
    else:
        if folds < 2 or repeats < 1:
            yield Failed("--folds must be at least 2 and --repeats at least 1")
            return
        result = yield from scan_for_task(data, stop)
        if result is None:
            return
        _, pool = _pool(result, seed)
        counts = np.bincount(pool.labels)
        folds_used = int(min(folds, counts[counts > 0].min())) if (counts > 0).any() else 0
        if folds_used < 2:
            yield Failed("every class needs at least 2 images for cross-validation")
            return
        got = yield from cross_validated_probs(data, out, result, folds_used, stop, seed, repeats, tta, config)
        if got is None:
            if stop.requested:
                yield Finished(None, stopped=True)
            return
        classes, pool, probs, fold_of = got
        paths, labels = pool.paths, pool.labels
        probs_path = write_oof(out, classes, paths, labels, fold_of, probs)
    try:
        scores = rank_label_issues(labels, probs, filter_by, rank_by)
    except LabelRankingError as exc:
        yield Failed(str(exc))
        return
    settings = {"filter_by": filter_by, "rank_by": rank_by, "tta": tta, "repeats": repeats, "folds": folds_used,
                "probs": probs_path, **trust(labels, probs, scores)}
    yield Finished(write_ranking(out, classes, paths, labels, scores, settings))
