"""A finished run's stored results (metrics + predictions.csv), re-scorable without its model.

Reading a run means parsing a CSV of every evaluated image's class probabilities (10,000 rows
for MNIST's test split): the GUI does it on a worker thread, so nothing here touches Qt.
"""
from __future__ import annotations

import numpy as np

from balancelab.engine.results.inference import rescore
from balancelab.engine.core.metrics import adjust_probabilities, posthoc_log_prior
from balancelab.engine.train.run_folder import RunError, read_predictions, require_complete


class LoadedRun:
    """Metrics and per-image probabilities of one run; ``rescored(tau)`` applies post-hoc logit adjustment."""

    def __init__(self, run: dict) -> None:
        self.dir = run["dir"]
        self.name = run["name"]
        self.config = run["config"]
        self.metrics = run["metrics"]
        self.paths, self.classes, self.y_true, _, self.probs = read_predictions(self.dir)
        try:
            self.log_prior = posthoc_log_prior(self.metrics, len(self.classes))
        except ValueError as exc:
            raise ValueError(f"metrics.json: {exc}") from None
        if list(self.metrics.get("classes", self.classes)) != self.classes:
            raise ValueError("metrics.json and predictions.csv name different classes")
        # the table shows metrics.json and the slider re-scores predictions.csv: they must describe the
        # same images (each class's row of the confusion matrix holds that class's predictions)
        rows = np.asarray(self.metrics["confusion_matrix"]).sum(axis=1)
        if rows.tolist() != np.bincount(self.y_true, minlength=len(self.classes)).tolist():
            raise ValueError("metrics.json and predictions.csv disagree on how many images of each class were "
                             "evaluated: the run folder was changed after training")
        self.current = self.metrics

    def rescored(self, tau: float) -> dict:
        self.current = self.metrics if tau == 0 else {**self.metrics, **rescore(self.probs, self.y_true, self.classes,
                                                                                 self.log_prior, tau)}
        return self.current

    def predicted(self, tau: float) -> np.ndarray:
        return adjust_probabilities(self.probs, self.log_prior, tau)


def load_run(run: dict, tau: float = 0.0) -> LoadedRun:
    """A run dict from :func:`list_runs`, loaded and scored at ``tau``; RunError when unreadable
    or incomplete (a run being resumed since it was listed)."""
    try:
        require_complete(run["dir"])
        loaded = LoadedRun(run)
        loaded.rescored(tau)
    except (KeyError, ValueError, TypeError, IndexError, OSError) as exc:
        raise RunError(f"cannot read run {run.get('name', run.get('dir'))}: {exc}") from exc
    return loaded
