"""French business identifiers: SIRET / SIREN cleaning and checking (python-stdnum)."""

from __future__ import annotations

import re

from stdnum.fr import siren as _siren
from stdnum.fr import siret as _siret

_NON_DIGIT = re.compile(r"[\s\u00a0\u202f.\-]")


def digits(raw: object) -> str:
    """Strip spaces, dots and dashes; turn Excel's 1.2345678901234E13 back into digits."""
    if raw is None:
        return ""
    if isinstance(raw, float):
        if raw != raw:  # NaN
            return ""
        raw = f"{raw:.0f}"
    s = _NON_DIGIT.sub("", str(raw).strip())
    if re.fullmatch(r"\d+(\.0+)?", s):
        s = s.split(".")[0]
    return s


def clean_siret(raw: object) -> str | None:
    """A valid 14-digit SIRET (Luhn, with La Poste's exception), else None."""
    s = digits(raw)
    if len(s) == 13 and s.isdigit():
        s = "0" + s  # leading zero lost by a spreadsheet
    if len(s) == 14 and s.isdigit() and _siret.is_valid(s):
        return s
    return None


def clean_siren(raw: object) -> str | None:
    """A valid 9-digit SIREN (or the SIREN of a valid SIRET), else None."""
    s = digits(raw)
    if len(s) == 8 and s.isdigit():
        s = "0" + s
    if len(s) == 9 and s.isdigit() and _siren.is_valid(s):
        return s
    siret = clean_siret(s)
    return siret[:9] if siret else None
