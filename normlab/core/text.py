"""How numbers read in messages and tables: one definition for the engine's refusals and the CLI."""

from __future__ import annotations

import math


def number(x: float) -> str:
    """A readable number for a message: 1234 -> '1,234', 12.345 -> '12.3', 0.01234 -> '0.0123'."""
    if not math.isfinite(x):
        return "overflow" if x > 0 else str(x)
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def short(value: float | None, digits: int = 4) -> str:
    """A table cell: ``digits`` significant digits, '-' for a missing value (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}"
