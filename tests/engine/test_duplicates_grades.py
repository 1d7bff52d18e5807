"""Duplicate groups graded by their evidence: exact (same content), near (perceptual hashes
agree), look-alike (joined only by embedding similarity). A look-alike must never be shown as a
copy, and hash evidence must win when both exist."""
from __future__ import annotations

import shutil

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from balancelab.engine.core.events import Finished
from balancelab.engine.data.duplicates import GRADES, find_duplicates
from balancelab.engine.data.scanner import scan_sync


def stroke(rng: np.random.Generator) -> Image.Image:
    im = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(im).line([tuple(p) for p in rng.uniform(5, 23, (5, 2))], fill=255, width=3)
    return im.filter(ImageFilter.GaussianBlur(0.7))


def groups_of(root, extra=None):
    return [e for e in find_duplicates(scan_sync(str(root)), extra_pairs=extra) if isinstance(e, Finished)][-1].result


def _tree(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for i in range(6):
        stroke(rng).save(tmp_path / "a" / f"{i}.png")
    shutil.copy(tmp_path / "a" / "0.png", tmp_path / "b" / "exact.png")  # exact copy leaking into b
    Image.open(tmp_path / "a" / "1.png").save(tmp_path / "b" / "jpeg.jpg", quality=60)  # near copy
    return tmp_path


def test_groups_are_graded_by_their_evidence(tmp_path):
    root = _tree(tmp_path)
    plain = {tuple(g.paths): g.grade for g in groups_of(root)}
    assert plain == {("a/0.png", "b/exact.png"): "exact", ("a/1.png", "b/jpeg.jpg"): "near"}
    # a/2 and a/3 are different strokes: only an embedding says they match -> look-alike;
    # the hash pair a/1 ~ b/jpeg also has an embedding pair: it stays near
    extra = [("a/2.png", "a/3.png", 0.004), ("a/1.png", "b/jpeg.jpg", 0.001)]
    graded = {tuple(g.paths): g for g in groups_of(root, extra)}
    assert {k: g.grade for k, g in graded.items()} == {("a/0.png", "b/exact.png"): "exact",
                                                       ("a/1.png", "b/jpeg.jpg"): "near",
                                                       ("a/2.png", "a/3.png"): "look-alike"}
    look = graded[("a/2.png", "a/3.png")]
    assert look.max_embedding_distance == 0.004 and look.to_dict()["grade"] == "look-alike"
    assert graded[("a/1.png", "b/jpeg.jpg")].max_embedding_distance == 0.001
    assert list(GRADES) == ["exact", "near", "look-alike"]  # most certain first (the UI sorts by it)


def test_an_embedding_only_member_makes_the_whole_group_a_look_alike(tmp_path):
    root = _tree(tmp_path)
    groups = groups_of(root, [("a/1.png", "a/4.png", 0.006)])
    g = next(g for g in groups if "a/1.png" in g.paths)
    assert g.paths == ["a/1.png", "a/4.png", "b/jpeg.jpg"] and g.grade == "look-alike"
