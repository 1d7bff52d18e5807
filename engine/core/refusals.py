"""Which exceptions are the engine refusing bad input, as opposed to a bug.

Each layer raises its own refusal type (a damaged run folder, a crafted checkpoint, a bad setting,
a class list that cannot be split). The CLI turns one into ``error: …`` with exit 2 and the GUI
into a one-line message; anything else is a bug and keeps its traceback. This module owns the
list, so both front ends agree. The types are matched by name in modules already imported, so
core depends on no higher layer.
"""
from __future__ import annotations

import sys

#: (module, class names): the engine's refusals of bad input
REFUSALS = (
    ("balancelab.engine.data.splits", ("SplitError",)),
    ("balancelab.engine.data.layout", ("LayoutError",)),
    ("balancelab.engine.train.run_folder", ("RunError",)),
    ("balancelab.engine.train.checkpoints", ("CheckpointError",)),
    ("balancelab.engine.train.config", ("ConfigError",)),
    ("balancelab.engine.train.models", ("ModelError",)),
    ("balancelab.engine.train.strategies", ("StrategyError",)),
    ("balancelab.engine.data.journal_store", ("JournalError",)),
)


def is_refusal(exc: BaseException) -> bool:
    """True when ``exc`` is one of the engine's refusals of bad input (its message is for the user)."""
    for module_name, names in REFUSALS:
        module = sys.modules.get(module_name)
        kinds = tuple(k for k in (getattr(module, n, None) for n in names) if isinstance(k, type))
        if kinds and isinstance(exc, kinds):
            return True
    return False
