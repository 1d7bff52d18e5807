"""Penultimate-layer embeddings of a trained run, and what they find that hashes cannot.

The input of a run's last linear layer is a description of the image the model learned to be
invariant to small shifts and re-encoding, so near copies that a perceptual hash loses (a
1-pixel shift moves a 28-pixel digit's DCT hash ~60 of 256 bits) stay close in cosine distance,
while different handwriting of the same digit does not. The same vectors give outliers (far
from every class centre) and the number of distinct modes per class (rare-class coverage).

Nearest neighbours: exact blocked search with torch (tens of thousands of images in seconds);
no approximate index is needed at the sizes this app trains on.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from balancelab.engine.core.events import EventStream, Failed, Finished, forward, StopToken, StreamFailed
from balancelab.engine.data.decode_cache import decode_images
from balancelab.engine.data.duplicates import DEFAULT_EMBEDDING_DISTANCE, DuplicateGroup, find_duplicates
from balancelab.engine.data.scanner import ScanResult
from balancelab.engine.results.inference import load_run_model
from balancelab.engine.train.checkpoints import CheckpointError
from balancelab.engine.train.run_folder import RunError

#: Below this median cosine distance between two different images, a run's embeddings describe every
#: image alike (an under-trained model whose features share one dominant direction: a 2-epoch
#: cifar-classic on the demo gave 0.0002, so every pair of its 828 images fell within 0.003), and
#: they can tell neither copies nor outliers. A trained tiny-2conv fold model on MNIST gives 0.60.
MIN_SPREAD = 0.03


def embedding_spread(feats: np.ndarray, labels: np.ndarray | None = None, pairs: int = 4000, seed: int = 0) -> float:
    """Median cosine distance between random pairs of different rows of unit vectors ``feats``;
    with ``labels``, pairs of different classes only (else a large class's tight cluster would
    decide it). A zero row (a model whose features are all zero) counts as at distance 0."""
    n = len(feats)
    if n < 2:
        return float("inf")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, 8 * pairs)
    j = (i + rng.integers(1, n, 8 * pairs)) % n  # never the same row
    if labels is not None:
        other = labels[i] != labels[j]
        if other.sum() >= 50:  # enough pairs across classes to judge
            i, j = i[other], j[other]
    i, j = i[:pairs], j[:pairs]
    live = (np.abs(feats[i]).sum(axis=1) > 0) & (np.abs(feats[j]).sum(axis=1) > 0)
    return float(np.median(np.where(live, 1.0 - np.einsum("ij,ij->i", feats[i], feats[j]), 0.0)))


def penultimate_features(model: torch.nn.Module, array: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """L2-normalised inputs of the model's last linear layer for uint8 N x H x W x C images."""
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    captured: list[torch.Tensor] = []
    hook = last.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach().flatten(1)))
    device = next(model.parameters()).device
    try:
        with torch.inference_mode():
            for start in range(0, len(array), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(array[start:start + batch_size])).to(device)
                model(x.permute(0, 3, 1, 2).float().div_(255.0))
    finally:
        hook.remove()
    if not captured:
        return np.zeros((0, last.in_features), dtype=np.float32)
    feats = torch.cat(captured).float()
    if not bool(torch.isfinite(feats).all()):  # finite but huge weights (a damaged checkpoint) overflow
        raise CheckpointError("the model's features are not numbers (NaN or infinite): its checkpoint is damaged")
    return torch.nn.functional.normalize(feats, dim=1).cpu().numpy()


def embed_images(run_dir: str, root: str, paths: list[str], stop: StopToken | None = None,
                 device: str = "cpu", labels: list[str] | None = None) -> EventStream[tuple[np.ndarray, np.ndarray] | None]:
    """Yield Progress; end with Finished((features N x D float32, ok bool N)) or stopped, or
    Failed(one line) when ``run_dir`` is no finished run with a loadable best checkpoint or its
    embeddings do not tell the images apart (see MIN_SPREAD; ``labels``, one per path: judged on
    pairs of different classes)."""
    try:
        model, state = load_run_model(run_dir, "best", device)
    except (RunError, CheckpointError, OSError) as exc:
        yield Failed(f"cannot use this run for embeddings: {exc}")
        return
    decoded = yield from forward(decode_images([os.path.join(root, p) for p in paths], int(state["in_channels"]),
                                               int(state["image_size"]), stop=stop, phase="embedding"))
    if decoded is None:
        yield Finished(None, stopped=True)
        return
    feats = np.zeros((len(paths), 0), dtype=np.float32)
    keep = np.flatnonzero(decoded.ok)
    if len(keep):
        got = penultimate_features(model, np.asarray(decoded.array)[keep])
        feats = np.zeros((len(paths), got.shape[1]), dtype=np.float32)
        feats[keep] = got
        spread = embedding_spread(got, None if labels is None else np.asarray(labels, dtype=object)[keep])
        if spread < MIN_SPREAD:
            pairs = "two images" if labels is None else "images of different classes"
            yield Failed(f"this run's embeddings do not tell the images apart (median distance between {pairs} "
                         f"{spread:.4f}, needs {MIN_SPREAD}): train it longer, or use another run")
            return
    yield Finished((feats, np.asarray(decoded.ok, dtype=bool)))


def close_pairs(feats: np.ndarray, max_distance: float, block: int = 1024) -> list[tuple[int, int, float]]:
    """(i, j, cosine distance), i < j, for every pair of unit vectors within ``max_distance``."""
    f = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
    pairs = []
    for a in range(0, len(f), block):
        sim = f[a:a + block] @ f[a:].T
        ii, jj = torch.nonzero(1.0 - sim <= max_distance, as_tuple=True)
        keep = jj > ii
        for i, j in zip(ii[keep].tolist(), jj[keep].tolist()):
            pairs.append((a + i, a + j, float(1.0 - sim[i, j])))
    return pairs


def find_duplicates_with_run(result: ScanResult, run_dir: str, threshold: int | None = None,
                             max_distance: float = DEFAULT_EMBEDDING_DISTANCE, stop: StopToken | None = None,
                             device: str = "cpu") -> EventStream[list[DuplicateGroup]]:
    """Hash duplicates plus pairs whose embeddings (of ``run_dir``'s best model) are within
    ``max_distance``: shifted and cropped copies, and train/test leakage hashes miss."""
    stop = stop or StopToken()
    paths = [img.path for img in result.images]
    try:
        got = yield from forward(embed_images(run_dir, result.root, paths, stop, device,
                                              [img.label for img in result.images]))
    except StreamFailed as exc:
        yield Failed(str(exc))
        return
    if got is None:
        yield Finished([], stopped=True)
        return
    feats, ok = got
    good = np.flatnonzero(ok)
    extra = [(paths[good[i]], paths[good[j]], d) for i, j, d in close_pairs(feats[good], max_distance)]
    kwargs = {} if threshold is None else {"threshold": threshold}
    yield from find_duplicates(result, stop=stop, extra_pairs=extra, **kwargs)


def outlier_scores(feats: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(cosine distance to the nearest class centre, that class) per image: high = an image
    unlike every class (e.g. a photo of a cat in a digits folder)."""
    centres = np.stack([feats[labels == c].mean(axis=0) if np.any(labels == c) else np.zeros(feats.shape[1])
                        for c in range(n_classes)])
    norms = np.linalg.norm(centres, axis=1, keepdims=True)
    centres = np.divide(centres, norms, out=np.zeros_like(centres), where=norms > 0)
    sim = feats @ centres.T
    return 1.0 - sim.max(axis=1), sim.argmax(axis=1)


def class_modes(feats: np.ndarray, labels: np.ndarray, n_classes: int, distance: float = 0.3,
                limit: int = 2000, seed: int = 0) -> list[int]:
    """Distinct modes per class: clusters of its embeddings (average-linkage cosine, cut at
    ``distance``); a minority class with one mode covers little of what it should."""
    from sklearn.cluster import AgglomerativeClustering

    rng = np.random.default_rng(seed)
    modes = []
    for c in range(n_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            modes.append(len(idx))
            continue
        idx = rng.permutation(idx)[:limit]
        clusters = AgglomerativeClustering(n_clusters=None, distance_threshold=distance, metric="cosine",
                                           linkage="average").fit_predict(feats[idx])
        modes.append(int(clusters.max()) + 1)
    return modes
