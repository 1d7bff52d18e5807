"""Dataset tab: first look at once, then the deep check's own progress and the problems it finds."""
from __future__ import annotations

from balancelab.engine.data import cache_files
from tests.engine.test_scan_photo import corrupt_png
from tests.gui.qt_helpers import open_and_wait
from tests.hostile import write_png


def test_first_look_then_deep_check_adds_problems(qtbot, window, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_files, "RACY_SECONDS", -1.0)
    root = tmp_path / "photos"
    for i in range(8):
        write_png(root / "a" / f"{i}.png", seed=i)
        write_png(root / "b" / f"{i}.png", seed=20 + i)
    corrupt_png(root / "b" / "broken.png")
    opened, deep, found = [], [], []
    window.session.dataset_opened.connect(lambda r: opened.append(r.deep_checked))
    window.session.deep_progress.connect(lambda d, t: deep.append((d, t)))
    window.session.problems_found.connect(lambda ps: found.extend(p.path for p in ps))
    open_and_wait(qtbot, window, root)
    qtbot.waitUntil(lambda: window.dataset_view.result.deep_checked, timeout=10000)
    dv = window.dataset_view
    assert opened == [False, True]  # the class table came before the decode pass
    assert deep and deep[-1] == (17, 17) and found == ["b/broken.png"]
    assert ("b/broken.png", "corrupt") in {(p.path, p.kind) for p in dv.problem_model.rows}
    assert not dv.deep_bar.isVisible()
    assert dv.loader.canonical is not None
    dv.class_table.selectRow(0)
    qtbot.waitUntil(lambda: dv.loader.sources.get("cache", 0) > 0, timeout=10000)
    assert "decode" not in dv.loader.sources  # thumbnails came from the decoded cache
