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


# --- the same checks in SQL (tested equal to python-stdnum in tests/test_ids.py) -------


def _luhn_sum(n: str, k: int) -> str:
    """Σ of the Luhn terms of the k-digit number n (a BIGINT expression), doubling every
    second digit from the right. Integer arithmetic: much faster than text slicing."""
    terms = []
    for p in range(k):
        d = f"(({n} // {10**p}) % 10)"
        terms.append(d if p % 2 == 0 else f"({d} * 2 - CASE WHEN {d} > 4 THEN 9 ELSE 0 END)")
    return "(" + " + ".join(terms) + ")"


def _digit_sum(n: str, k: int) -> str:
    return "(" + " + ".join(f"(({n} // {10**p}) % 10)" for p in range(k)) + ")"


def siren_valid_sql(x: str) -> str:
    """SQL boolean: x is a valid SIREN (9 digits, Luhn), as python-stdnum says."""
    n = f"TRY_CAST({x} AS BIGINT)"
    return f"(regexp_full_match({x}, '[0-9]{{9}}') AND {_luhn_sum(n, 9)} % 10 = 0)"


def siret_valid_num_sql(x: str, n: str) -> str:
    """SQL boolean from a text column x and the same value as BIGINT n (computed once in an
    inner query: the fast form used on millions of rows)."""
    return (
        f"(regexp_full_match({x}, '[0-9]{{14}}') AND "
        f"CASE WHEN {n} // 100000 = 356000000 AND {n} <> 35600000000048 "
        f"THEN {_digit_sum(n, 14)} % 5 = 0 ELSE {_luhn_sum(n, 14)} % 10 = 0 END "
        f"AND {_luhn_sum(f'({n} // 100000)', 9)} % 10 = 0)"
    )


def siret_valid_sql(x: str) -> str:
    """SQL boolean: x is a valid SIRET as python-stdnum says (Luhn on 14 digits, except
    La Poste's establishments 356000000xxxxx whose digit sum is a multiple of 5; and a
    valid SIREN). x must be a plain expression (it is repeated)."""
    return siret_valid_num_sql(x, f"TRY_CAST({x} AS BIGINT)")


def digits_sql(x: str, width: int) -> str:
    """Spaces, dots and dashes removed; one lost leading zero restored (13 -> 14, 8 -> 9)."""
    d = f"regexp_replace(trim({x}), '[\\s\u00a0\u202f.\\-]', '', 'g')"
    return f"CASE WHEN regexp_full_match({d}, '[0-9]{{{width - 1}}}') THEN '0' || {d} ELSE {d} END"


def clean_siret_table_sql(values_sql: str) -> str:
    """SELECT raw, siret, siren over the distinct non-null values of ``values_sql`` (one
    column): the SQL twin of ``clean_siret`` and of ``clean_siren`` (siren = the SIRET's
    first 9 digits, else a valid SIREN written alone)."""
    s14 = digits_sql("raw", 14)
    s9 = digits_sql("raw", 9)
    return f"""
        WITH d AS (SELECT DISTINCT v AS raw FROM ({values_sql}) t(v) WHERE v IS NOT NULL),
        e AS (SELECT raw, {s14} AS s14, {s9} AS s9 FROM d),
        n AS (SELECT raw, s14, s9, TRY_CAST(s14 AS BIGINT) AS n14 FROM e)
        SELECT raw,
               CASE WHEN {siret_valid_num_sql("s14", "n14")} THEN s14 END AS siret,
               CASE WHEN {siret_valid_num_sql("s14", "n14")} THEN left(s14, 9)
                    WHEN {siren_valid_sql("s9")} THEN s9 END AS siren
        FROM n
    """
