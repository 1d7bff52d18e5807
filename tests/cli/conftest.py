"""Fixtures of the command-line tests: one tiny trained run shared by the whole session."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_run(demo_root, tmp_path_factory):
    """A 1-epoch tiny-2conv run folder on the demo dataset, trained through the CLI itself."""
    from balancelab.engine.cli.main import main

    out = tmp_path_factory.mktemp("cli-run") / "run"
    code = main(["train", "--data", str(demo_root), "--out", str(out), "--model", "tiny-2conv", "--epochs", "1",
                 "--augment", "none", "--device", "cpu"])
    assert code == 0
    return out
