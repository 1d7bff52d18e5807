"""A self-contained HTML report of a run (charts and sample errors embedded as data URIs).

Every string that comes from the run folder (class names, config values, paths) is untrusted
and goes through ``html.escape``; image paths are confined to the dataset root.
"""
from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass

import numpy as np

from balancelab.engine.core.safe_paths import UnsafePathError, confined
from balancelab.engine.results.new_files import refuse_existing, write_new_file
from balancelab.engine.train.checkpoints import CheckpointError
from balancelab.engine.train.run_folder import RunError, read_config, read_metrics, read_predictions, require_complete
from balancelab.engine.core.metrics import HEADLINE


def _png(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _charts(metrics: dict) -> list[str]:
    from matplotlib.figure import Figure

    out = []
    hist = metrics.get("history") or []
    if hist:
        fig = Figure(figsize=(7, 3), layout="constrained")
        a, b = fig.subplots(1, 2)
        ep = [h["epoch"] for h in hist]
        a.plot(ep, [h["train_loss"] for h in hist], "o-", label="train")
        a.plot(ep, [h["val_loss"] for h in hist], "o-", label="val")
        a.set_title("loss")
        a.legend()
        b.plot(ep, [h["val_balanced_accuracy"] for h in hist], "o-", label="val balanced acc")
        b.plot(ep, [h["val_accuracy"] for h in hist], "o-", label="val acc")
        b.set_title("validation")
        b.legend()
        out.append(_png(fig))
    counts = metrics.get("train_counts") or []
    if counts:
        fig = Figure(figsize=(5, 3), layout="constrained")
        ax = fig.subplots()
        ax.scatter(counts, [c["recall"] for c in metrics["per_class"]])
        for name, x, y in zip(metrics["classes"], counts, [c["recall"] for c in metrics["per_class"]]):
            ax.annotate(name, (x, y), fontsize=7)
        if min(counts) > 0:
            ax.set_xscale("log")
        ax.set_xlabel("training images")
        ax.set_ylabel("recall")
        ax.set_title("recall vs class frequency")
        out.append(_png(fig))
    return out


def _thumb(data_root: str, rel: str) -> str:
    from balancelab.engine.data.imageio import ImageDecodeError, open_image, to_channels

    try:
        im = to_channels(open_image(confined(data_root, rel)), 3)
    except (ImageDecodeError, UnsafePathError):
        return ""
    im.thumbnail((96, 96))
    if max(im.size) < 96:
        scale = 96 // max(im.size)
        im = im.resize((im.width * scale, im.height * scale))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@dataclass(frozen=True)
class WrittenReport:
    """The report's path and its warnings: sections left out because a run file is damaged, or a
    model that will not load. The report is still worth having; the page and the caller both say
    what it lacks."""

    path: str
    warnings: list[str]


def write_report(run_dir: str, out_path: str, data_root: str | None = None, n_errors: int = 12) -> WrittenReport:
    """Write the report to ``out_path`` (a new file: an existing one is refused, never replaced)."""
    require_complete(run_dir)
    refuse_existing(out_path)
    metrics, config = read_metrics(run_dir), read_config(run_dir)
    data_root = data_root or config.get("data")

    def e(value) -> str:
        return html.escape(str(value))

    classes = metrics["classes"]
    cm = np.array(metrics["confusion_matrix"])
    rows_sum = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows_sum, out=np.zeros_like(cm, dtype=float), where=rows_sum > 0)
    parts = [f"<!doctype html><meta charset='utf-8'><title>BalanceLab report: {e(os.path.basename(run_dir))}</title>",
             "<style>body{font-family:sans-serif;margin:24px;color:#1b1b1f}table{border-collapse:collapse;margin:8px 0}"
             "td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f1f3f4}"
             ".err{display:inline-block;margin:4px;text-align:center;font-size:12px}</style>",
             f"<h1>BalanceLab run {e(os.path.basename(run_dir))}</h1>",
             f"<p>Model <b>{e(config.get('model', ''))}</b>, strategy <b>{e(config.get('strategy', ''))}</b>, "
             f"{len(metrics.get('history', []))} epochs (best {e(metrics.get('best_epoch'))}), seed {e(config.get('seed'))}, "
             f"evaluated on <b>{e(metrics.get('evaluated_on', ''))}</b> ({e(metrics.get('n_evaluated', ''))} images). "
             f"Dataset: {e(data_root)}</p>",
             "<table><tr>" + "".join(f"<th title='{e(m.description)}'>{e(m.name)}</th>" for m in HEADLINE.values())
             + "</tr><tr>" + "".join(f"<td>{e(m.format(metrics[k]))}</td>" for k, m in HEADLINE.items()) + "</tr></table>"]
    parts.append("<h2>Per class</h2><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>specificity</th><th>support</th></tr>")
    for c in metrics["per_class"]:
        parts.append(f"<tr><td>{e(c['name'])}</td><td>{c['precision']:.3f}</td><td>{c['recall']:.3f}</td><td>{c['f1']:.3f}</td>"
                     f"<td>{_num(c.get('specificity', 0)):.3f}</td><td>{e(c['support'])}</td></tr>")
    parts.append("</table><h2>Confusion matrix</h2><p>rows: true class, columns: predicted</p><table><tr><th></th>"
                 + "".join(f"<th>{e(c)}</th>" for c in classes) + "</tr>")
    for i, name in enumerate(classes):
        cells = "".join(f"<td style='background:rgb({int(255 - 200 * f)},{int(255 - 150 * f)},{int(255 - 40 * f)})'>{v}</td>"
                        for v, f in zip(cm[i], frac[i]))
        parts.append(f"<tr><th>{e(name)}</th>{cells}</tr>")
    parts.append("</table>")
    excluded = metrics.get("excluded_classes") or {}
    if isinstance(excluded, dict) and excluded:
        parts.append("<p><b>Not trained</b>: " + "; ".join(f"{e(name)} ({e(why)})" for name, why in excluded.items())
                     + "</p>")
    missing = metrics.get("classes_without_evaluation_images") or []
    if isinstance(missing, list) and missing:
        parts.append(f"<p><b>No evaluation images</b> for: {e(', '.join(map(str, missing)))} "
                     "(their scores above are not measured)</p>")
    warnings = _model_warnings(run_dir)
    try:
        charts = _charts(metrics)
    except (KeyError, TypeError, ValueError):  # a history with odd entries: the report without charts
        charts = []
        warnings.append("the training curves are left out: the history in metrics.json is damaged")
    for uri in charts:
        parts.append(f"<p><img src='{uri}'></p>")
    try:
        paths, _, y_true, y_pred, probs = read_predictions(run_dir)
        wrong = np.flatnonzero(y_true != y_pred)
        wrong = wrong[np.argsort(-probs[wrong, y_pred[wrong]])][:n_errors]
        if len(wrong):
            parts.append("<h2>Most confident errors</h2>")
            for i in wrong:
                uri = _thumb(data_root, paths[i]) if data_root else ""
                img = f"<img src='{uri}'><br>" if uri else ""
                parts.append(f"<div class='err'>{img}{e(paths[i])}<br>true {e(classes[y_true[i]])}, "
                             f"predicted {e(classes[y_pred[i]])} ({probs[i, y_pred[i]]:.2f})</div>")
    except (RunError, IndexError) as exc:  # a report without the errors section is still useful
        reason = str(exc) if isinstance(exc, RunError) else "predictions.csv names a class the run does not have"
        warnings.append(f"the most confident errors are left out: {reason}")
    if warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{e(why)}</li>" for why in warnings) + "</ul>")
    # a name that is not UTF-8 (kept as escaped bytes) is written back as its own bytes
    return WrittenReport(write_new_file(out_path, "\n".join(parts).encode("utf-8", "surrogateescape")), warnings)


def _model_warnings(run_dir: str) -> list[str]:
    """The report reads only metrics, so a damaged best.pt (unreadable, NaN, overflowing) would go
    unnoticed until the next evaluate or export: load the model here and say so."""
    from balancelab.engine.results.inference import load_usable_model

    try:
        load_usable_model(run_dir)
    except (CheckpointError, RunError) as exc:
        return [f"the run's model cannot be used ({exc}): evaluate, predict and exports of this run will fail"]
    return []


def _num(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
