"""How a run is named in a picker (Predict's run, Results' "Compare with"): its folder name and
its headline score, with the split the score was measured on, so a bare number never reads as
something it is not. The run's metrics were read back from disk: a missing or odd value is left out."""
from __future__ import annotations

from balancelab.engine.core.untrusted import is_finite_number


def run_choice_label(run: dict) -> str:
    metrics = run.get("metrics") if isinstance(run.get("metrics"), dict) else {}
    score, split = metrics.get("balanced_accuracy"), metrics.get("evaluated_on")
    if not is_finite_number(score):
        return str(run.get("name", ""))
    where = f" on {split}" if isinstance(split, str) and split else ""
    return f"{run.get('name', '')}  (balanced accuracy {float(score):.3f}{where})"
