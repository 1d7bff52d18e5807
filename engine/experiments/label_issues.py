"""Find likely mislabeled images: k-fold cross-validated training gives out-of-fold
probabilities for every image, ranked by confident learning (Northcutt et al. 2021).

Scores: self-confidence p[given], normalized margin p[given] - max_{j != given} p[j];
a sample is *flagged* when another class's probability reaches that class's
per-class threshold t_j (the mean p_j over the images labelled j), i.e. it falls in an
off-diagonal cell of the confident joint. The ranking puts flagged images first, lowest
normalized margin first.
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from balancelab.engine.train.config import TrainConfig
from balancelab.engine.data.splits import DataSplits, SampleList, stratified_holdout, make_splits
from balancelab.engine.core.events import Failed, Finished, Progress, StopToken
from balancelab.engine.train.run_folder import read_predictions
from balancelab.engine.core.atomic import write_csv_atomic
from balancelab.engine.data.scanner import scan_for_task
from balancelab.engine.train.run import train


def confident_learning_scores(labels: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    labels = np.asarray(labels)
    n, k = probs.shape
    self_conf = probs[np.arange(n), labels]
    others = probs.copy()
    others[np.arange(n), labels] = -np.inf
    margin = self_conf - others.max(axis=1)
    thresholds = np.array([probs[labels == j, j].mean() if np.any(labels == j) else 1.0 for j in range(k)])
    above = probs >= thresholds[None, :]
    above[np.arange(n), labels] = False
    flagged = above.any(axis=1)
    suggested = np.where(flagged, np.where(above, probs, -1).argmax(axis=1), probs.argmax(axis=1))
    order = np.lexsort((margin, ~flagged))  # flagged first, then by margin ascending
    return {"self_confidence": self_conf, "normalized_margin": margin, "flagged": flagged,
            "suggested": suggested, "order": order}


def find_label_issues(data: str, out: str, folds: int = 5, stop: StopToken | None = None, seed: int = 0,
                      **config) -> Iterator:
    """Yield Progress events and ends with Finished({"csv": path, "ranking": [...]})."""
    from sklearn.model_selection import StratifiedKFold

    stop = stop or StopToken()
    result = yield from scan_for_task(data, stop)
    if result is None:
        return
    base = make_splits(result, 0.15, seed)
    pool = SampleList(base.train.paths + base.val.paths, np.concatenate([base.train.labels, base.val.labels])) \
        if base.val_source == "train" else base.train
    classes = base.classes
    digests = {img.path: img.digest for img in result.images}
    counts = np.bincount(pool.labels, minlength=len(classes))
    folds = int(min(folds, counts[counts > 0].min())) if (counts > 0).any() else folds
    if folds < 2:
        yield Failed("every class needs at least 2 images for cross-validation")
        return
    probs = np.zeros((len(pool), len(classes)))
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    index = {p: i for i, p in enumerate(pool.paths)}
    for f, (tr, te) in enumerate(skf.split(np.zeros(len(pool)), pool.labels)):
        if stop.requested:
            yield Finished(None, stopped=True)
            return
        yield Progress("cross-validation", f, folds, f"fold {f + 1}/{folds}")
        train_part = pool.subset(tr)
        tr_i, va_i = stratified_holdout(train_part, [digests[p] for p in train_part.paths], 0.15, seed + f)
        splits = DataSplits(classes, train_part.subset(tr_i), train_part.subset(va_i), pool.subset(te), "train")
        run_dir = os.path.join(out, f"fold{f + 1}")
        cfg = TrainConfig(data=data, out=run_dir, seed=seed + f, **config)
        finished = None
        for ev in train(cfg, stop, scan_result=result, splits=splits):
            if isinstance(ev, Failed):
                yield Failed(f"fold {f + 1}: {ev.message}", ev.detail)
                return
            if isinstance(ev, Finished):
                finished = ev
        if finished is None or not finished.result.metrics:
            yield Finished(None, stopped=True)
            return
        paths, _, _, _, fold_probs = read_predictions(run_dir)
        for p, row in zip(paths, fold_probs):
            probs[index[p]] = row
    yield Progress("cross-validation", folds, folds)
    scores = confident_learning_scores(pool.labels, probs)
    ranking = []
    for rank, i in enumerate(scores["order"], start=1):
        ranking.append({
            "rank": rank, "path": pool.paths[i], "given": classes[pool.labels[i]],
            "suggested": classes[scores["suggested"][i]], "self_confidence": float(scores["self_confidence"][i]),
            "normalized_margin": float(scores["normalized_margin"][i]), "flagged": bool(scores["flagged"][i]),
        })
    csv_path = os.path.join(out, "label_issues.csv")
    header = ["rank", "path", "given", "suggested", "self_confidence", "normalized_margin", "flagged"]
    write_csv_atomic(csv_path, header, ([r[h] for h in header] for r in ranking))
    yield Finished({"csv": csv_path, "ranking": ranking, "folds": folds})
