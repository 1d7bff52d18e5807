"""Export a finished run: TorchScript and ONNX models (class list and preprocessing in the
metadata, checked by reloading and comparing predictions), the balanced dataset as trained, or
an HTML report. One registry, :data:`EXPORTS`, drives the CLI's ``--format`` and the Results tab.

Every export refuses an incomplete run, creates new files only (an existing target is refused,
never replaced), and turns a full disk or a permission error into one :class:`RunError` line.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from balancelab.engine.core.events import EventStream, Finished, Progress, StopToken
from balancelab.engine.core.metrics import posthoc_log_prior
from balancelab.engine.core.safe_paths import UnsafePathError, confined
from balancelab.engine.data.imageio import ImageDecodeError, load_array
from balancelab.engine.results.export_dataset import export_balanced_dataset
from balancelab.engine.results.inference import finite_outputs, load_run_model, predict_arrays
from balancelab.engine.results.new_files import refuse_existing, write_error, write_new_file
from balancelab.engine.train.run_folder import RunError, read_predictions, require_complete


def export_metadata(state: dict) -> dict:
    return {
        "classes": list(state["classes"]),
        "image_size": int(state["image_size"]),
        "in_channels": int(state["in_channels"]),
        "model": state["model_name"],
        "strategy": state.get("strategy", ""),
        # what post-hoc logit adjustment subtracts (x tau): the training data's class prior
        "log_prior": posthoc_log_prior(state, len(state["classes"])).tolist(),
        "preprocessing": (f"decode, apply EXIF orientation, convert to {'L' if int(state['in_channels']) == 1 else 'RGB'}, "
                          f"resize the shorter side to {state['image_size']} px (bilinear) and center-crop to "
                          f"{state['image_size']}x{state['image_size']}, scale to [0, 1] as float32 NCHW; "
                          + _inside_the_model(state) + "; output: logits (softmax for probabilities)"),
    }


def _inside_the_model(state: dict) -> str:
    """The preprocessing the exported model does itself (an ensemble's members may differ)."""
    if state.get("deskew") is True:
        return "deskewing and mean/std normalisation are inside the model"
    some, members = state.get("deskewed_members", 0), state.get("members", 1)
    if some:
        return f"deskewing (in {some} of its {members} members) and mean/std normalisation are inside the model"
    return "mean/std normalisation is inside the model"


def _sample_inputs(run_dir: str, data_root: str | None, state: dict, n: int = 16) -> np.ndarray:
    """Real images of the run's evaluated split when the dataset is at hand, else random ones."""
    size, channels = int(state["image_size"]), int(state["in_channels"])
    arrays = []
    if data_root and os.path.isdir(data_root):
        try:
            paths = read_predictions(run_dir)[0]
        except RunError:
            paths = []
        for rel in paths[:n]:
            try:
                arrays.append(load_array(confined(data_root, rel), channels, size))
            except (ImageDecodeError, UnsafePathError):
                continue
    if not arrays:
        rng = np.random.default_rng(0)
        arrays = list(rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8))
    return np.stack(arrays)


def _model_and_reference(run_dir: str, data_root: str | None) -> tuple[torch.nn.Module, dict, np.ndarray, np.ndarray]:
    """The run's model, sample inputs and its own probabilities on them, checked to be numbers
    before anything is written: a model whose outputs overflow to NaN would otherwise export and
    even "pass" the reload check (NaN differences compare as nothing)."""
    model, state = load_run_model(run_dir)
    arrays = _sample_inputs(run_dir, data_root, state)
    return model, state, arrays, finite_outputs(predict_arrays(model, arrays), run_dir)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _check(out_path: str, got: np.ndarray, want: np.ndarray, meta: dict, n: int) -> dict:
    return {"path": out_path, "metadata": meta, "images_checked": n,
            "max_abs_prob_diff": float(np.abs(got - want).max()),
            "same_top1": bool((got.argmax(1) == want.argmax(1)).all())}


def export_torchscript(run_dir: str, out_path: str, data_root: str | None = None) -> dict:
    """TorchScript for C++ / mobile runtimes that load it. torch marks torch.jit deprecated in
    favour of torch.export; that notice speaks to torch's developers, so it is not passed on to users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        return _export_torchscript(run_dir, out_path, data_root)


def _export_torchscript(run_dir: str, out_path: str, data_root: str | None) -> dict:
    out_path = os.path.abspath(out_path)
    refuse_existing(out_path)
    model, state, arrays, want = _model_and_reference(run_dir, data_root)
    x = torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255.0
    with torch.inference_mode():
        traced = torch.jit.trace(model, x[:1], check_trace=False)
    meta = export_metadata(state)
    buffer = io.BytesIO()  # serialised in memory: torch's file writer hides ENOSPC in a RuntimeError
    torch.jit.save(traced, buffer, _extra_files={"balancelab.json": json.dumps(meta)})
    write_new_file(out_path, buffer.getvalue())
    extra = {"balancelab.json": ""}
    with open(out_path, "rb") as fh:  # the bytes on disk, read back (torch's loader takes no undecodable name)
        loaded = torch.jit.load(io.BytesIO(fh.read()), _extra_files=extra)
    with torch.inference_mode():
        got = torch.softmax(loaded(x), dim=1).numpy()
    return _check(out_path, got, want, json.loads(extra["balancelab.json"]), len(arrays))


def export_onnx(run_dir: str, out_path: str, data_root: str | None = None) -> dict:
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        raise RunError("ONNX export needs the packages onnx, onnxscript and onnxruntime "
                       "(pip install onnx onnxscript onnxruntime)") from None
    out_path = os.path.abspath(out_path)
    refuse_existing(out_path)
    model, state, arrays, want = _model_and_reference(run_dir, data_root)
    x = torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255.0
    batch = torch.export.Dim("batch", min=1, max=4096)
    with tempfile.TemporaryDirectory(prefix="balancelab-onnx-") as scratch:  # the exporter wants a path
        tmp = os.path.join(scratch, "model.onnx")
        torch.onnx.export(model, (x[:2],), tmp, input_names=["image"], output_names=["logits"],
                          dynamic_shapes={"x": {0: batch}}, dynamo=True, external_data=False, verbose=False)
        proto = onnx.load(tmp)
    for key, value in export_metadata(state).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    write_new_file(out_path, proto.SerializeToString())
    session = ort.InferenceSession(out_path, providers=["CPUExecutionProvider"])
    got = _softmax(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    meta = {p.key: json.loads(p.value) for p in onnx.load(out_path).metadata_props}
    return _check(out_path, got, want, meta, len(arrays))


def _report(run_dir: str, out: str, data_root: str | None) -> dict:
    from balancelab.engine.results.report import write_report

    report = write_report(run_dir, out, data_root)
    return {"path": report.path, "warnings": report.warnings}


def _dataset(run_dir: str, out: str, data_root: str | None, stop: StopToken) -> EventStream[dict]:
    if not data_root:
        raise RunError("the dataset folder (--data) is needed to export the balanced dataset")
    return (yield from export_balanced_dataset(run_dir, data_root, out, stop))


def _at_once(write: Callable[[str, str, str | None], dict]):
    """An export written in one call (a model, a report) as an event stream like the others."""
    def steps(run_dir: str, out: str, data_root: str | None, stop: StopToken) -> EventStream[dict]:
        yield Progress("exporting", 0, 1)
        info = write(run_dir, out, data_root)
        yield Progress("exporting", 1, 1)
        yield Finished(info)
    return steps


@dataclass(frozen=True)
class ExportKind:
    """One kind of export: what it writes (a new file or a new/empty folder) and the function."""

    name: str
    help: str
    target: str  # "file" or "folder"
    suffix: str  # default file name suffix ("" for a folder)
    steps: Callable[[str, str, str | None, StopToken], EventStream[dict]]  # events, then Finished(info)
    label: str = ""  # the Results tab's button text (default: the name)
    file_filter: str = ""  # the save dialog's filter for a file target


EXPORTS: dict[str, ExportKind] = {k.name: k for k in (
    ExportKind("report", "self-contained HTML report", "file", ".html", _at_once(_report), "HTML report",
               "HTML report (*.html)"),
    ExportKind("torchscript", "TorchScript model, reloaded and checked", "file", ".torchscript.pt",
               _at_once(export_torchscript), "TorchScript", "TorchScript model (*.pt)"),
    ExportKind("onnx", "ONNX model, reloaded and checked with onnxruntime", "file", ".onnx", _at_once(export_onnx),
               "ONNX", "ONNX model (*.onnx)"),
    ExportKind("dataset", "the balanced training set as trained (epoch 1), hard links or copies, into a new or empty folder",
               "folder", "", _dataset, "Balanced dataset"),
)}


def export_steps(kind: str, run_dir: str, out: str, data_root: str | None = None,
                 stop: StopToken | None = None) -> EventStream[dict | None]:
    """Export the finished run ``run_dir`` as ``kind`` to ``out`` (a new file, or a new or empty
    folder): Progress events, then Finished(info), or Finished(None) when stopped (nothing left)."""
    spec = EXPORTS.get(kind)
    if spec is None:
        raise RunError(f"unknown export format {kind!r}; choose one of {', '.join(EXPORTS)}")
    require_complete(run_dir)
    if data_root is not None and not os.path.isdir(data_root):  # named, so it must be usable, whatever the kind
        raise RunError(f"dataset folder does not exist: {data_root}")
    try:
        return (yield from spec.steps(run_dir, out, data_root, stop or StopToken()))
    except UnsafePathError as exc:
        raise RunError(str(exc)) from None
    except OSError as exc:
        raise write_error(out, exc) from None


def export_run(kind: str, run_dir: str, out: str, data_root: str | None = None) -> dict:
    """:func:`export_steps` run to its end: the export's info."""
    finished = [ev for ev in export_steps(kind, run_dir, out, data_root) if isinstance(ev, Finished)]
    return finished[-1].result
