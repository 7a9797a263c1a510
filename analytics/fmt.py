"""French display formats for numbers, shares and dates (`1 234 567 €`, `12,3 %`, `25/11/2026`).

Every page, report and command line summary formats through these helpers so a figure
reads the same everywhere. Missing values (None, NaN) read "non disponible".
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

MISSING = "non disponible"
THOUSANDS = " "  # a plain space, as in the project's documented formats

MONTHS_FR = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip


def _is_missing(value) -> bool:
    if value is None:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def fmt_number(value, decimals: int = 0, *, sign: bool = False) -> str:
    """12345.678 -> '12 345,7' (decimals=1); sign=True prefixes '+' on positive values."""
    if _is_missing(value):
        return MISSING
    x = float(value) if not isinstance(value, Decimal) else value
    text = f"{x:,.{decimals}f}"
    zero = text.lstrip("-").strip("0,.") == ""
    if zero:  # -0.04 rounds to 0: no sign at all
        text = text.lstrip("-")
    text = text.replace(",", "\x00").replace(".", ",").replace("\x00", THOUSANDS)
    if sign and not zero and not text.startswith("-"):
        text = "+" + text
    return text


def fmt_int(value) -> str:
    """1234567 -> '1 234 567'."""
    return fmt_number(value, 0)


def fmt_eur(value, decimals: int = 0) -> str:
    """1234567.4 -> '1 234 567 €'; decimals=2 -> '1 234 567,40 €'."""
    if _is_missing(value):
        return MISSING
    return f"{fmt_number(value, decimals)} €"


def fmt_pct(share, decimals: int = 1, *, sign: bool = False) -> str:
    """A fraction in [0, 1] as a percentage: 0.1234 -> '12,3 %'."""
    if _is_missing(share):
        return MISSING
    return f"{fmt_number(float(share) * 100, decimals, sign=sign)} %"


def fmt_points(delta, decimals: int = 1) -> str:
    """A difference of two shares (fractions) in percentage points: 0.012 -> '+1,2 pt'."""
    if _is_missing(delta):
        return MISSING
    return f"{fmt_number(float(delta) * 100, decimals, sign=True)} pt"


def fmt_date(value) -> str:
    """date, datetime or ISO text -> '25/11/2026'."""
    if _is_missing(value) or value == "":
        return MISSING
    if isinstance(value, str):
        value = dt.date.fromisoformat(value[:10])
    if hasattr(value, "date") and callable(value.date):  # datetime, pandas Timestamp
        value = value.date()
    return value.strftime("%d/%m/%Y")


UNIT_DECIMALS = {"days": 1, "km": 1, "hours": 0, "fte": 1, "index": 3, "count": 0}
UNIT_SUFFIX = {"days": " jours", "km": " km", "hours": " h", "fte": " ETP", "count": "", "index": ""}


def fmt_value(value, unit: str) -> str:
    """Format by unit: 'eur', 'share', 'count', 'days', 'km', 'hours', 'fte', 'index'."""
    if _is_missing(value):
        return MISSING
    if unit == "eur":
        return fmt_eur(value)
    if unit == "share":
        return fmt_pct(value)
    return fmt_number(value, UNIT_DECIMALS.get(unit, 1)) + UNIT_SUFFIX.get(unit, "")
