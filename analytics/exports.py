"""CSV and XLSX downloads of a table, safe to open in a spreadsheet.

A cell of text that a spreadsheet would read as a formula (starting with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return) gets a leading apostrophe: supplier names and
contract objects come from files we do not control. Numbers stay numbers (amounts are
summed by whoever opens the file), dates stay dates.

The CSV is the French spreadsheet dialect: ``;`` between fields, ``,`` as decimal mark,
UTF-8 with a byte-order mark so Excel detects the encoding.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import math
import re

import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# Column names that hold euros or fractions, when the caller does not say.
_MONEY = re.compile(r"(amount|montant|spend|depense|dépense|total|paid|paye|payé|notifi)", re.I)
_SHARE = re.compile(r"(share|part|rate|taux|ratio|pct)", re.I)


def neutralise(value):
    """The value, with a leading apostrophe if it is text a spreadsheet would evaluate."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _plain(value):
    """A cell value xlsxwriter and csv both understand (Decimal → float, NA → None)."""
    if value is None:
        return None
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass  # lists and arrays
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.replace(tzinfo=None)
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()  # numpy scalar
        except (ValueError, AttributeError):
            return str(value)
    return value


def safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy where every text cell is neutralised and numbers are plain floats/ints."""
    out = pd.DataFrame(index=range(len(df)))
    for col in df.columns:
        values = [neutralise(_plain(v)) for v in df[col].tolist()]
        out[neutralise(str(col))] = pd.Series(values, dtype=object)
        if pd.api.types.is_numeric_dtype(df[col].dtype) and not pd.api.types.is_bool_dtype(df[col].dtype):
            out[neutralise(str(col))] = pd.to_numeric(out[neutralise(str(col))], errors="coerce")
    return out


def to_csv_bytes(df: pd.DataFrame, *, sep: str = ";", decimal_mark: str = ",") -> bytes:
    """The table as CSV bytes (French dialect, UTF-8 with BOM), formula-like text neutralised."""
    buf = io.StringIO()
    frame = safe_frame(df)
    # Object columns holding floats need the decimal mark too.
    for col in frame.columns:
        if frame[col].dtype == object:
            frame[col] = [
                (repr(v).replace(".", decimal_mark) if isinstance(v, float) else v) for v in frame[col]
            ]
    frame.to_csv(buf, sep=sep, decimal=decimal_mark, index=False, lineterminator="\r\n")
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def to_xlsx_bytes(
    tables: pd.DataFrame | dict[str, pd.DataFrame],
    *,
    money: tuple[str, ...] | None = None,
    shares: tuple[str, ...] | None = None,
) -> bytes:
    """An XLSX workbook, one sheet per table; amounts and shares keep numeric cells.

    ``money`` / ``shares`` name the columns formatted as euros / percentages; by
    default they are guessed from the column names (montant, amount… / part, share, taux…).
    """
    import xlsxwriter

    if isinstance(tables, pd.DataFrame):
        tables = {"Données": tables}
    buf = io.BytesIO()
    # strings_to_formulas False: xlsxwriter would otherwise write "=…" as a formula.
    wb = xlsxwriter.Workbook(
        buf,
        {
            "in_memory": True,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
            "nan_inf_to_errors": True,
        },
    )
    head = wb.add_format({"bold": True, "bg_color": "#E8ECEF", "border": 1, "text_wrap": True})
    eur = wb.add_format({"num_format": '#,##0.00 "€"'})
    pct = wb.add_format({"num_format": "0.0%"})
    num = wb.add_format({"num_format": "#,##0.##"})
    date_fmt = wb.add_format({"num_format": "dd/mm/yyyy"})
    ts_fmt = wb.add_format({"num_format": "dd/mm/yyyy hh:mm"})
    used = set()
    for name, df in tables.items():
        sheet_name = _sheet_name(name, used)
        ws = wb.add_worksheet(sheet_name)
        frame = safe_frame(df)
        for j, col in enumerate(frame.columns):
            ws.write_string(0, j, str(col), head)
            orig = df.columns[j]
            is_num = pd.api.types.is_numeric_dtype(df[orig].dtype) and not pd.api.types.is_bool_dtype(
                df[orig].dtype
            )
            if money is not None or shares is not None:
                col_money = str(orig) in (money or ())
                col_share = str(orig) in (shares or ())
            else:
                col_share = is_num and bool(_SHARE.search(str(orig)))
                col_money = is_num and not col_share and bool(_MONEY.search(str(orig)))
            cell_fmt = eur if col_money else pct if col_share else num if is_num else None
            width = max([len(str(col))] + [len(str(v)) for v in frame[col].head(200).tolist()])
            ws.set_column(j, j, min(max(width + 2, 10), 60))
            for i, v in enumerate(frame[col].tolist(), start=1):
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    continue
                if isinstance(v, bool):
                    ws.write_boolean(i, j, v)
                elif isinstance(v, (int, float)):
                    if isinstance(v, float) and math.isinf(v):
                        continue
                    ws.write_number(i, j, v, cell_fmt)
                elif isinstance(v, dt.datetime):
                    ws.write_datetime(i, j, v, ts_fmt)
                elif isinstance(v, dt.date):
                    ws.write_datetime(i, j, dt.datetime.combine(v, dt.time()), date_fmt)
                else:
                    ws.write_string(i, j, str(v))
        ws.freeze_panes(1, 0)
        if len(frame.columns):
            ws.autofilter(0, 0, max(len(frame), 1), len(frame.columns) - 1)
    wb.close()
    return buf.getvalue()


def _sheet_name(name: str, used: set[str]) -> str:
    """A valid, unique Excel sheet name (≤ 31 characters, no []:*?/\\)."""
    base = re.sub(r"[\[\]:*?/\\]", " ", str(name)).strip()[:31] or "Feuille"
    candidate, n = base, 2
    while candidate.lower() in used:
        suffix = f" ({n})"
        candidate = base[: 31 - len(suffix)] + suffix
        n += 1
    used.add(candidate.lower())
    return candidate


def file_stem(text: str) -> str:
    """A file name stem from a title: 'Top fournisseurs 2025' -> 'top_fournisseurs_2025'."""
    import unicodedata

    s = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "_", s).strip("_") or "export"
