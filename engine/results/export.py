"""Export a run: TorchScript and ONNX models (class list and preprocessing in the metadata,
checked by reloading and comparing predictions), and the balanced dataset as trained."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import torch

from balancelab.engine.data.imageio import ImageDecodeError, load_array
from balancelab.engine.results.inference import load_run_model, predict_arrays
from balancelab.engine.train.run_folder import RunError, read_json
from balancelab.engine.core.atomic import write_csv_atomic
from balancelab.engine.train.strategies import epoch_indices, parse_strategy


def export_metadata(state: dict) -> dict:
    return {
        "classes": list(state["classes"]),
        "image_size": int(state["image_size"]),
        "in_channels": int(state["in_channels"]),
        "model": state["model_name"],
        "strategy": state.get("strategy", ""),
        "log_prior": list(state.get("log_prior", [])),
        "preprocessing": (f"decode, apply EXIF orientation, convert to {'L' if int(state['in_channels']) == 1 else 'RGB'}, "
                          f"resize the shorter side to {state['image_size']} px (bilinear) and center-crop to "
                          f"{state['image_size']}x{state['image_size']}, scale to [0, 1] as float32 NCHW; "
                          "mean/std normalisation is inside the model; output: logits (softmax for probabilities)"),
    }


def _sample_inputs(run_dir: str, data_root: str | None, state: dict, n: int = 16) -> np.ndarray:
    """Real images of the run's evaluated split when the dataset is at hand, else random ones."""
    size, channels = int(state["image_size"]), int(state["in_channels"])
    arrays = []
    pred_path = os.path.join(run_dir, "predictions.csv")
    if data_root and os.path.exists(pred_path):
        import csv

        with open(pred_path, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))[1:]
        for row in rows[:n]:
            try:
                arrays.append(load_array(os.path.join(data_root, row[0]), channels, size))
            except ImageDecodeError:
                continue
    if not arrays:
        rng = np.random.default_rng(0)
        arrays = list(rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8))
    return np.stack(arrays)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def export_torchscript(run_dir: str, out_path: str, data_root: str | None = None) -> dict:
    model, state = load_run_model(run_dir)
    arrays = _sample_inputs(run_dir, data_root, state)
    x = torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255.0
    with torch.inference_mode():
        traced = torch.jit.trace(model, x[:1], check_trace=False)
    meta = export_metadata(state)
    tmp = out_path + ".tmp"
    torch.jit.save(traced, tmp, _extra_files={"balancelab.json": json.dumps(meta)})
    os.replace(tmp, out_path)
    extra = {"balancelab.json": ""}
    loaded = torch.jit.load(out_path, _extra_files=extra)
    with torch.inference_mode():
        got = torch.softmax(loaded(x), dim=1).numpy()
    want = predict_arrays(model, arrays)
    return {"path": out_path, "metadata": json.loads(extra["balancelab.json"]), "images_checked": len(arrays),
            "max_abs_prob_diff": float(np.abs(got - want).max()),
            "same_top1": bool((got.argmax(1) == want.argmax(1)).all())}


def export_onnx(run_dir: str, out_path: str, data_root: str | None = None) -> dict:
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        raise RunError("ONNX export needs the packages onnx, onnxscript and onnxruntime "
                       "(pip install onnx onnxscript onnxruntime)") from None
    model, state = load_run_model(run_dir)
    arrays = _sample_inputs(run_dir, data_root, state)
    x = torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255.0
    tmp = out_path + ".tmp.onnx"
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(model, (x[:2],), tmp, input_names=["image"], output_names=["logits"],
                      dynamic_shapes={"x": {0: batch}}, dynamo=True, external_data=False)
    proto = onnx.load(tmp)
    for key, value in export_metadata(state).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(proto, tmp)
    os.replace(tmp, out_path)
    session = ort.InferenceSession(out_path, providers=["CPUExecutionProvider"])
    got = _softmax(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    want = predict_arrays(model, arrays)
    meta = {p.key: json.loads(p.value) for p in onnx.load(out_path).metadata_props}
    return {"path": out_path, "metadata": meta, "images_checked": len(arrays),
            "max_abs_prob_diff": float(np.abs(got - want).max()),
            "same_top1": bool((got.argmax(1) == want.argmax(1)).all())}


def _link_or_copy(src: str, dst: str) -> str:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
        return "link"
    except OSError:
        shutil.copy2(src, dst)
        return "copy"


def export_balanced_dataset(run_dir: str, data_root: str, out_dir: str) -> dict:
    """Write the training images of epoch 1 as the sampler drew them, as an ImageFolder.

    Files are hard links to the originals where the file system allows (no extra space;
    never edit them in place: that edits the original), else copies. An image drawn k times
    appears k times (``name__rep2.png`` ...). Loss re-weighting is not a property of the data
    and is not reflected; ``manifest.csv`` maps every written file to its source.
    """
    if os.path.exists(out_dir) and os.listdir(out_dir):
        raise RunError(f"{out_dir} is not empty; choose a new folder")
    config = read_json(os.path.join(run_dir, "config.json"))
    split = read_json(os.path.join(run_dir, "split.json"))
    classes = split["classes"]
    index = {c: i for i, c in enumerate(classes)}
    train = split["train"]
    labels = np.array([index[label] for _, label in train])
    plan = parse_strategy(config["strategy"])
    idx = epoch_indices(plan, labels, 0, int(config["seed"]), config.get("sampling_strategy"))
    seen: dict[int, int] = {}
    rows, modes = [], set()
    for i in idx:
        rel, label = train[int(i)]
        seen[int(i)] = seen.get(int(i), 0) + 1
        base, ext = os.path.splitext(os.path.basename(rel))
        name = f"{base}{ext}" if seen[int(i)] == 1 else f"{base}__rep{seen[int(i)]}{ext}"
        src = os.path.join(data_root, rel)
        if not os.path.isfile(src):
            continue
        dst_rel = f"{label}/{name}"
        modes.add(_link_or_copy(src, os.path.join(out_dir, dst_rel)))
        rows.append((dst_rel, rel))
    write_csv_atomic(os.path.join(out_dir, "manifest.csv"), ["file", "source"], rows)
    counts = {c: 0 for c in classes}
    for dst_rel, _ in rows:
        counts[dst_rel.split("/")[0]] += 1
    return {"path": out_dir, "files": len(rows), "class_counts": counts, "method": "+".join(sorted(modes)) or "none"}
