"""Reading the preferences file back: it is untrusted like any file the app reads (edited by hand,
written by another version, damaged). A value of the wrong kind or out of range is ignored, so
the window always opens with defaults instead of a traceback."""
from __future__ import annotations

import math

from PySide6.QtCore import QByteArray


def whole_number(value: object, lo: int, hi: int) -> int | None:
    """An int (or its text, as an INI file stores it) within [lo, hi], else None."""
    if isinstance(value, bool):
        return None
    try:
        number = int(value) if isinstance(value, int) else int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if lo <= number <= hi else None


def on_off(value: object) -> bool | None:
    """A bool (or its text, "true" / "false" as an INI file stores it), else None."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    return {"true": True, "false": False}.get(text) if text is not None else None


def real_number(value: object, lo: float, hi: float) -> float | None:
    """A finite float (or its text) within [lo, hi], else None: "nan" is not clamped to a limit."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return None
    return number if math.isfinite(number) and lo <= number <= hi else None


def byte_array(value: object) -> QByteArray | None:
    """Saved window geometry or state, else None."""
    if isinstance(value, QByteArray):
        return value
    if isinstance(value, bytes):
        return QByteArray(value)
    return None


def text_list(value: object) -> list[str]:
    """A list of strings (one string alone counts as a list of one); anything else is empty."""
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, (list, tuple)) else []
