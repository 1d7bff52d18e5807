"""Plant known curation problems into any ImageFolder tree (class folders at the top), seeded,
and return the truth: label flips (files moved into a wrong class) and copies (exact, resized,
re-encoded, shifted, brightened). Used by bench/curation_quality.py.
"""
from __future__ import annotations

import os
import shutil

import numpy as np
from PIL import Image, ImageChops, ImageEnhance

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
NEAR_KINDS = ("resize32", "jpeg60", "shift1", "bright10")


def list_imagefolder(root: str) -> dict[str, list[str]]:
    """Class name -> sorted file names of images directly in that class folder."""
    out = {}
    for cls in sorted(os.listdir(root)):
        folder = os.path.join(root, cls)
        if os.path.isdir(folder):
            out[cls] = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTS))
    return out


def sample_imagefolder(src: str, dst: str, per_class: int, seed: int) -> int:
    """Copy ``per_class`` randomly chosen images of every class of ``src`` into ``dst``."""
    rng = np.random.default_rng(seed)
    n = 0
    for cls, files in list_imagefolder(src).items():
        os.makedirs(os.path.join(dst, cls), exist_ok=True)
        for f in rng.permutation(files)[:per_class]:
            shutil.copy2(os.path.join(src, cls, f), os.path.join(dst, cls, f))
            n += 1
    return n


def flip_labels(root: str, fraction: float, seed: int) -> set[str]:
    """Move ``fraction`` of the images into another (uniformly chosen) class folder; returns the
    new relative paths (``class/file``) of the flipped images."""
    rng = np.random.default_rng(seed)
    tree = list_imagefolder(root)
    classes = list(tree)
    items = [(c, f) for c in classes for f in tree[c]]
    chosen = rng.choice(len(items), int(round(fraction * len(items))), replace=False)
    flipped = set()
    for i in sorted(chosen):
        cls, name = items[i]
        others = [c for c in classes if c != cls]
        new = others[int(rng.integers(len(others)))]
        target = name if not os.path.exists(os.path.join(root, new, name)) else f"flip-{cls}-{name}"
        shutil.move(os.path.join(root, cls, name), os.path.join(root, new, target))
        flipped.add(f"{new}/{target}")
    return flipped


def near_copy(img: Image.Image, kind: str) -> Image.Image:
    """One planted near-copy: resized to 32 px and back, shifted 1 px, or 10 % brighter (the
    JPEG kind is the image itself, saved at quality 60 by the caller)."""
    if kind == "resize32":
        return img.resize((32, 32), Image.Resampling.BILINEAR).resize(img.size, Image.Resampling.BILINEAR)
    if kind == "shift1":
        return ImageChops.offset(img, 1, 0)
    if kind == "bright10":
        return ImageEnhance.Brightness(img).enhance(1.1)
    return img


def plant_copies(root: str, n_exact: int, n_near: int, seed: int) -> list[tuple[str, str, str]]:
    """Write ``n_exact`` byte copies and ``n_near`` near copies (split evenly over NEAR_KINDS)
    of distinct random images next to their originals; returns (original, copy, kind)."""
    rng = np.random.default_rng(seed)
    items = [f"{c}/{f}" for c, files in list_imagefolder(root).items() for f in files]
    picks = rng.choice(len(items), n_exact + n_near, replace=False)
    truth = []
    for k, i in enumerate(picks):
        orig = items[i]
        cls, name = orig.split("/", 1)
        stem = os.path.splitext(name)[0]
        if k < n_exact:
            copy = f"{cls}/copy-exact-{stem}{os.path.splitext(name)[1]}"
            shutil.copyfile(os.path.join(root, orig), os.path.join(root, copy))
            truth.append((orig, copy, "exact"))
            continue
        kind = NEAR_KINDS[(k - n_exact) % len(NEAR_KINDS)]
        with Image.open(os.path.join(root, orig)) as im:
            img = near_copy(im.convert("L" if im.mode in ("L", "1", "P") else "RGB"), kind)
        if kind == "jpeg60":
            copy = f"{cls}/copy-{kind}-{stem}.jpg"
            img.save(os.path.join(root, copy), quality=60)
        else:
            copy = f"{cls}/copy-{kind}-{stem}.png"
            img.save(os.path.join(root, copy))
        truth.append((orig, copy, kind))
    return truth
