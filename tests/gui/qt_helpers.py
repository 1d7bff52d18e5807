"""Helpers shared by the GUI tests."""


def open_and_wait(qtbot, w, root):
    w.open_dataset(str(root))
    qtbot.waitUntil(lambda: w.dataset_view.result is not None and w.dataset_view.result.root == str(root), timeout=30000)
    qtbot.waitUntil(lambda: not w.scan_thread.is_busy(), timeout=10000)
    qtbot.waitUntil(lambda: not w.results_view.loading(), timeout=10000)  # runs are read on a worker
