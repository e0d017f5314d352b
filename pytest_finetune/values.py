"""Checks of the numbers a run, a baseline or a result cache entry holds, in one place."""

from __future__ import annotations

import math
from typing import Any

from .tolerances import FRACTIONS


def is_number(value: object) -> bool:
    """Whether ``value`` is a JSON number (not a boolean)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def metric_problem(name: str, value: Any) -> str | None:
    """Why ``value`` cannot be a value of the metric ``name`` (as in "metric 'f1' is ..."): it is not a finite
    number, or lies outside [0, 1] for one of :data:`FRACTIONS`; ``None`` when it can."""
    if not is_finite_number(value):
        return f"{shown(value)}, not a finite number"
    if name in FRACTIONS and not 0 <= value <= 1:
        return f"{value:g}, outside [0, 1]"
    return None


def shown(value: Any) -> str:
    """``value`` as a message shows it, cut after 40 characters."""
    return repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:40]}..."


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is a finite JSON number (not a boolean, not an integer beyond a float's range)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def is_count(value: Any) -> bool:
    """Whether ``value`` is a whole number of 0 or more (not a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
