"""Grad-CAM (Selvaraju et al. 2017) on the last convolution of any model in the registry, drawn over
the image as the user has it (a deskewing model's map is moved back off the straightened image)."""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from balancelab.engine.train.models import ImageClassifier


def last_conv(model: nn.Module) -> nn.Conv2d:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("the model has no convolution layer for Grad-CAM")
    return convs[-1]


def grad_cam(model: nn.Module, image: torch.Tensor, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Heat maps in [0, 1] (one per class, at the input size) and the class probabilities.

    ``image``: float tensor C x H x W in [0, 1].
    """
    layer = last_conv(model)
    deskew = _deskew_before(model, layer)
    store: dict[str, torch.Tensor] = {}

    def hook(_module, _inp, out):
        out.retain_grad()
        store["act"] = out

    handle = layer.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        x = image.unsqueeze(0).to(next(model.parameters()).device).requires_grad_(False)
        with torch.enable_grad():
            logits = model(x)
            probs = torch.softmax(logits.detach().float(), dim=1)[0].cpu().numpy()
            maps = []
            for c in classes:
                model.zero_grad(set_to_none=True)
                if store["act"].grad is not None:
                    store["act"].grad = None
                logits[0, c].backward(retain_graph=True)
                act, grad = store["act"].detach(), store["act"].grad.detach()
                weights = grad.mean(dim=(2, 3), keepdim=True)
                cam = F.relu((weights * act).sum(dim=1, keepdim=True))
                maps.append(F.interpolate(cam, size=image.shape[-2:], mode="bilinear", align_corners=False))
        cams = torch.cat(maps, dim=1)  # 1 x classes x H x W
        if deskew is not None:  # the maps are over the straightened image: put them on the user's, in one pass
            cams = deskew.to_input(cams, x).clamp_min(0)
    finally:
        handle.remove()
        model.train(was_training)
    out = []
    for cam in cams[0]:
        hi = float(cam.max())
        out.append((cam / hi).cpu().numpy() if hi > 0 else np.zeros(image.shape[-2:], dtype=np.float32))
    return np.stack(out), probs


def _deskew_before(model: nn.Module, layer: nn.Module):
    """The deskewing of the classifier that ``layer`` belongs to (an ensemble's members may differ)."""
    for m in model.modules():
        if isinstance(m, ImageClassifier) and any(sub is layer for sub in m.modules()):
            return m.deskew
    return None


class CamExplainer:
    """Grad-CAM overlays of one image for several classes, with the last run's model kept loaded.

    Review asks for image after image of the same run: loading the checkpoint once per run (not
    per image) is what makes a click show its heat maps in well under a second.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._loaded = None

    def model(self, run_dir: str):
        """The run's model and state, loaded once per run and checkpoint: a best.pt replaced since
        (a resumed or damaged run) is loaded again, never served from memory. The model is run once
        on a grey image so that weights that overflow to NaN are refused here, not drawn as maps."""
        from balancelab.engine.results.inference import load_usable_model

        key = (run_dir, _checkpoint_identity(run_dir))
        if self._key != key:
            self._key, self._loaded = None, None  # never serve the previous run's model after a failure
            self._loaded, self._key = load_usable_model(run_dir), key
        return self._loaded

    def overlays(self, run_dir: str, image_path: str, classes: list[int]) -> dict:
        """{"image": H x W x 3 uint8, "overlays": one H x W x 3 uint8 per class, "probs": class probabilities}."""
        from matplotlib import colormaps

        from balancelab.engine.data.imageio import load_array

        model, state = self.model(run_dir)
        arr = load_array(image_path, int(state["in_channels"]), int(state["image_size"]))
        x = torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0
        maps, probs = grad_cam(model, x, classes)
        base = np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr
        jet = colormaps["jet"]
        overlays = [(0.55 * base + 0.45 * (jet(m)[:, :, :3] * 255)).clip(0, 255).astype(np.uint8) for m in maps]
        return {"image": base.astype(np.uint8), "overlays": overlays, "probs": probs}

    def clear(self) -> None:
        self._key, self._loaded = None, None


def _checkpoint_identity(run_dir: str) -> tuple:
    """What changes when the run's model file is replaced: its inode, size and modification time
    (best.pt, or ensemble.json for an ensemble); nothing when it cannot be read (load reports why)."""
    for name in ("best.pt", "ensemble.json"):
        try:
            st = os.stat(os.path.join(run_dir, name))
        except OSError:
            continue
        return name, st.st_ino, st.st_size, st.st_mtime_ns
    return ()
