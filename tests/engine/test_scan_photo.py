"""The first look, the deep check and the one decode pass (issue 15)."""
from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from balancelab.engine.core.events import Finished, Progress
from balancelab.engine.data import cache_files, imageio
from balancelab.engine.data.canonical import CANONICAL_SIZE, load_canonical
from balancelab.engine.data.first_look import check_header
from balancelab.engine.data.scanner import FirstLook, ProblemsFound, scan, scan_sync
from tests.hostile import make_problem_tree, write_png


@pytest.fixture
def count_decodes(monkeypatch):
    monkeypatch.setattr(imageio, "COUNT_DECODES", True)
    monkeypatch.setattr(imageio, "DECODE_CALLS", [])
    monkeypatch.setattr(cache_files, "RACY_SECONDS", -1.0)  # files written just now may be cached
    return imageio.DECODE_CALLS


def corrupt_png(path: Path, seed: int = 3) -> None:
    """A PNG whose header and IEND are intact but whose pixel data is damaged (bad IDAT CRC)."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    at = data.index(b"IDAT") + 20
    data[at:at + 8] = b"\0" * 8
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))


def jpeg(path: Path, size=(64, 48), seed: int = 0, exif_thumb: bool = False) -> None:
    arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, "JPEG", quality=90)


def test_first_look_finds_structural_problems_without_decoding(tmp_path, count_decodes):
    planted = make_problem_tree(tmp_path)
    result = scan_sync(str(tmp_path), workers=1, deep=False)
    found = {(p.path, p.kind) for p in result.problems}
    for path, kind in planted.items():
        if kind not in ("leakage",):  # duplicates need the contents: the deep check's job
            assert (path, kind) in found, f"missing {kind} for {path}: {sorted(found)}"
    assert not result.deep_checked and result.class_counts("train") == {"bird": 0, "cat": 6, "dog": 3}
    assert count_decodes == []
    assert len({img.digest for img in result.images}) == len(result.images)  # no content known: no groups


def test_end_markers_and_long_headers(tmp_path):
    good = tmp_path / "a.jpg"
    jpeg(good, (300, 200))
    assert check_header(str(good))[:3] == ("ok", 300, 200)
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:-40])
    assert check_header(str(tmp_path / "cut.jpg"))[:2] == ("bad", "truncated")
    # a header longer than the first read (a big APP segment before the frame header)
    im = Image.open(good)
    buf = io.BytesIO()
    im.save(buf, "JPEG", icc_profile=b"\0" * 200_000)
    (tmp_path / "long.jpg").write_bytes(buf.getvalue())
    assert check_header(str(tmp_path / "long.jpg"))[:3] == ("ok", 300, 200)


def test_deep_check_adds_corrupt_pixels_as_it_goes(tmp_path, count_decodes):
    for i in range(6):
        write_png(tmp_path / "a" / f"{i}.png", seed=i)
        write_png(tmp_path / "b" / f"{i}.png", seed=10 + i)
    corrupt_png(tmp_path / "b" / "broken.png")
    events = list(scan(str(tmp_path), workers=1))
    first = next(e for e in events if isinstance(e, FirstLook)).result
    assert first.class_counts() == {"a": 6, "b": 7} and not first.deep_checked
    found = [p for e in events if isinstance(e, ProblemsFound) for p in e.problems]
    assert [(p.path, p.kind) for p in found] == [("b/broken.png", "corrupt")]
    assert any(isinstance(e, Progress) and e.phase == "deep check" for e in events)
    final = events[-1].result
    assert final.deep_checked and final.class_counts() == {"a": 6, "b": 6}
    assert ("b/broken.png", "corrupt") in {(p.path, p.kind) for p in final.problems}
    assert all(img.digest for img in final.images)
    assert sorted(Counter(count_decodes).values()) == [1] * 13


def test_open_then_train_two_models_decodes_each_file_once(tmp_path, count_decodes):
    from balancelab.engine.train.config import TrainConfig
    from balancelab.engine.train.run import train

    data = tmp_path / "data"
    for label, n in (("x", 12), ("y", 5)):
        for i in range(n):
            jpeg(data / "train" / label / f"{i}.jpg", (60 + i, 40), seed=hash((label, i)) % 1000)
            jpeg(data / "test" / label / f"{i}.jpg", (40, 50), seed=500 + i)
    opened = scan_sync(str(data))  # what opening the folder in the app does
    assert opened.canonical is not None and load_canonical(str(data)) is not None
    assert len(count_decodes) == 34
    for model, result in (("tiny-2conv", opened), ("cifar-classic", None)):  # 28 px, then 32 px with its own scan
        cfg = TrainConfig(data=str(data), out=str(tmp_path / model), model=model, epochs=1, batch_size=8)
        events = list(train(cfg, scan_result=result))
        assert isinstance(events[-1], Finished), events[-1]
    assert sorted(Counter(count_decodes).values()) == [1] * 34
    again = scan_sync(str(data))  # opening it again decodes nothing either
    assert len(count_decodes) == 34 and again.canonical is not None


def test_canonical_size_serves_every_default_model_input_but_inception():
    from balancelab.engine.train.models import MODELS

    larger = {name for name, spec in MODELS.items() if spec.default_size > CANONICAL_SIZE}
    assert larger == {"inception_v3"}  # a new larger model is a decision, not an accident
    assert CANONICAL_SIZE == max(spec.default_size for name, spec in MODELS.items() if name not in larger)


def test_thumbnails_come_from_exif_or_the_cache_never_a_full_decode(tmp_path, count_decodes, monkeypatch):
    from bench.photo_folder import exif_with_thumbnail
    from balancelab.engine.data import thumbnail_source
    from balancelab.engine.data.thumbnail_source import embedded_thumbnail, thumbnail_image

    big = Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    thumb = big.copy()
    thumb.thumbnail((160, 160))
    buf = io.BytesIO()
    thumb.save(buf, "JPEG")
    photo = tmp_path / "a" / "photo.jpg"
    photo.parent.mkdir()
    big.save(photo, "JPEG", exif=exif_with_thumbnail(buf.getvalue(), orientation=6))
    assert embedded_thumbnail(photo.read_bytes()[:65536])[1] == 6
    monkeypatch.setattr(thumbnail_source, "open_image", lambda *a, **k: pytest.fail("decoded the photo"))
    im, source = thumbnail_image(str(photo), 96)
    assert source == "exif" and im.size == (72, 96)  # rotated by its EXIF orientation
    jpeg(tmp_path / "b" / "plain.jpg", (80, 60))  # no EXIF thumbnail: the decoded cache serves it
    result = scan_sync(str(tmp_path))
    im, source = thumbnail_image(str(tmp_path / "b" / "plain.jpg"), 48, result.canonical)
    assert source == "cache" and im.size == (48, 48)
    assert len(count_decodes) == 2  # the deep check's one decode per file, nothing for thumbnails


def test_deep_check_chunks_cover_every_file_once_and_shrink_at_the_end():
    from balancelab.engine.data.deep_check import CHUNK_BYTES, _chunks

    for n, size, workers in ((303, 2_400_000, 2), (50_000, 3_000_000, 2), (7, 100, 4), (1, 10, 1), (2000, 40_000, 16)):
        chunks = _chunks(n, [size] * n, workers)
        assert chunks[0][0] == 0 and chunks[-1][1] == n
        assert all(a < b for a, b in chunks) and all(b == c for (_, b), (c, _) in zip(chunks, chunks[1:]))
        sizes = [b - a for a, b in chunks]
        assert max(sizes) * size <= max(CHUNK_BYTES, size)  # memory: one chunk holds ~64 MB of files at most
        assert sizes == sorted(sizes, reverse=True)  # never a long chunk after short ones
        left = n
        for s in sizes:  # the tail: no chunk longer than half a worker's share of what is left
            assert s <= max(1, -(-left // (2 * workers)))
            left -= s
        if n >= 4 * workers:
            assert sizes[-1] == 1


def test_content_digest_is_blake3_of_the_bytes():
    from blake3 import blake3

    from balancelab.engine.data.deep_check import content_digest

    data = b"\xff\xd8\xff" + bytes(range(256)) * 1000
    assert content_digest(data) == blake3(data).hexdigest()[:32]
    assert content_digest(data) != content_digest(data[:-1])
