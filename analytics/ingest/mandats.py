"""Paid spend (mandats) from CSV, XLSX or the Marché de l'inclusion JSON fixture.

``load(con, import_id, path, options)`` detects the encoding, the delimiter and the
header row, maps the headers by synonyms (``SYNONYMS`` below; ``options.mapping``
overrides), parses every line in DuckDB (amounts, dates), rejects the lines whose
amount or date cannot be read, keeps the lines whose SIRET is missing or invalid
(supplier not identified), and inserts the lines whose natural key is not already in
``mandats``. ``run_import`` wraps it in one transaction.

Line numbers are the file's physical line numbers (the first line of a record that
spans several lines), the Excel row number in a workbook, and the rank of the record
in a JSON array. When a CSV's records cannot be matched one to one with its physical
lines (a quote left open), the number is the record's rank plus the header's line
(``details['line_numbers'] == 'approx'``).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from analytics import ids
from analytics.ingest import common
from analytics.ingest.common import ImportRefused, LoadCounts, Options, norm_header, norm_name

# field -> the headers that mean it (compared after norm_header: case, accents, spaces
# and punctuation ignored; a parenthesis and a trailing currency are ignored too).
# fmt: off
SYNONYMS: dict[str, list[str]] = {
    "mandat_date": [
        "date", "date de mandat", "date du mandat", "date mandat", "date d'émission", "date émission",
        "date d'émission du mandat", "date émission bordereau", "date_emission_bordereau",
        "date de mandatement", "date mandatement", "date bordereau", "date du bordereau", "date pièce",
        "date comptable", "date d'opération", "date de la dépense", "date dépense", "date d'achat",
    ],
    "payment_date": [
        "date de paiement", "date paiement", "date_paiement", "date du paiement", "date de règlement",
        "date règlement", "date de virement", "date virement", "date de paiement comptable",
        "date paiement comptable", "date payé",
    ],
    "invoice_date": [
        "date de réception facture", "date de réception de la facture", "date réception facture",
        "date de réception", "date réception", "date facture", "date de facture", "date de la facture",
        "date_facture", "date de dépôt facture", "date arrivée facture",
    ],
    "exercice": [
        "exercice", "exercice comptable", "exer", "année", "année d'achat", "annee", "millésime",
        "millésime mandatement", "purchase_year", "année budgétaire",
    ],
    "budget": [
        "budget", "code budget", "budget code", "libellé budget", "codbud", "code_budget",
    ],
    "bordereau": [
        "bordereau", "n° bordereau", "n bordereau", "no bordereau", "numéro de bordereau",
        "numéro bordereau", "num bordereau", "n_bordereau", "idbord", "bordereau n°",
    ],
    "mandat_number": [
        "n° mandat", "n mandat", "no mandat", "numéro de mandat", "numéro mandat", "num mandat",
        "n_mandat", "mandat", "mandat n°", "idpce", "n° pièce", "numéro de pièce", "n° de mandat",
        "numero_mandat",
    ],
    "line_no": [
        "n° ligne", "n ligne", "no ligne", "ligne", "numéro de ligne", "numéro ligne", "n_ligne",
        "idligne", "ligne de mandat", "n° de ligne", "num ligne",
    ],
    "supplier_name": [
        "fournisseur", "tiers", "raison sociale", "nom", "raison sociale du fournisseur",
        "nom du fournisseur", "nom fournisseur", "fournisseur nom", "nom du tiers", "nom tiers",
        "tiers nom", "tiers_nom", "libellé tiers", "libellé du tiers", "bénéficiaire",
        "nom du bénéficiaire", "créancier", "titulaire", "dénomination", "supplier_name",
        "raison sociale fournisseur", "raison sociale du tiers",
    ],
    "supplier_siret": [
        "siret", "n° siret", "numéro siret", "siret fournisseur", "siret du fournisseur", "siret tiers",
        "siret du tiers", "tiers siret", "tiers_siret", "supplier_siret", "siret/siren",
        "siret ou siren", "siret du titulaire", "siret bénéficiaire",
    ],
    "supplier_siren": [
        "siren", "n° siren", "siren fournisseur", "siren du fournisseur", "siren tiers",
    ],
    "amount_ht": [
        "montant ht", "montant_ht", "mt ht", "mtht", "montant hors taxes", "montant hors taxe", "ht",
        "montant mandaté ht", "montant mandate ht", "montant ht mandaté", "montant payé ht",
        "montant de la ligne ht",
    ],
    "amount_tva": [
        "montant tva", "montant_tva", "tva", "mt tva", "mttva", "montant de tva",
    ],
    "amount_ttc": [
        "montant ttc", "montant_ttc", "mt ttc", "mtttc", "ttc", "montant mandaté ttc",
        "montant mandate ttc", "montant ttc mandaté", "montant payé ttc",
        "montant toutes taxes comprises", "montant de la ligne ttc",
    ],
    "amount": [
        "montant", "montant mandaté", "montant mandate", "montant payé", "montant réglé",
        "montant du mandat", "montant mandat", "montant de la ligne", "montant ligne", "dépense achat",
        "dépense", "dépenses", "montant de la dépense", "purchase_amount", "montant net",
        "montant dépense", "mt", "somme",
    ],
    "nature": [
        "imputation", "nature", "compte", "compte nature", "imputation nature", "imputation_nature",
        "article", "compte par nature", "nature comptable", "compte de nature", "article budgétaire",
        "compte budgétaire", "compte comptable",
    ],
    "fonction": [
        "fonction", "imputation fonction", "imputation_fonction", "code fonction",
        "rubrique fonctionnelle",
    ],
    "objet": [
        "objet", "libellé", "libelle", "objet du mandat", "objet mandat", "libellé mandat",
        "libellé du mandat", "objet de la dépense", "libellé de la ligne", "libellé ligne",
        "désignation", "intitulé", "objet de la ligne", "libellé dépense",
    ],
    "contract_number": [
        "n° de marché", "n° marché", "numéro de marché", "numéro marché", "marché", "n marché",
        "nmarché", "référence marché", "référence du marché", "code marché", "n_marche", "num marché",
        "n° du marché",
    ],
    "service": [
        "service", "direction", "entité acheteuse", "buying_entity", "service gestionnaire",
        "service acheteur", "direction gestionnaire", "entité", "pôle", "service demandeur",
        "direction acheteuse",
    ],
    "category": [
        "catégorie d'achat", "catégorie", "catégorie achat", "famille d'achat", "famille d'achats",
        "famille achat", "purchase_category", "nomenclature achat", "code famille", "famille",
        "segment d'achat",
    ],
    "supplier_postcode": [
        "code postal", "cp", "code postal du tiers", "code postal tiers", "tiers cp", "tiers_cp",
        "cp fournisseur", "code postal fournisseur", "code postal du fournisseur",
    ],
    "supplier_city": [
        "ville", "commune", "ville du tiers", "ville tiers", "tiers ville", "tiers_ville", "localité",
        "ville fournisseur", "ville du fournisseur", "commune du fournisseur",
    ],
    "buyer_siret": [
        "siret de l'acheteur", "siret acheteur", "siret collectivité", "siret de la collectivité",
        "idcoll", "siret ordonnateur", "siret de l'ordonnateur", "siret entité acheteuse",
        "siretmandataire", "siret organisme",
    ],
    "buyer_name": [
        "nom de l'acheteur", "acheteur", "nom acheteur", "libellé acheteur", "libelleacheteur",
        "collectivité", "organisme", "nom de la collectivité", "ordonnateur",
    ],
}
# fmt: on

FIELD_LABELS: dict[str, str] = {
    "mandat_date": "date du mandat",
    "payment_date": "date de paiement",
    "invoice_date": "date de réception de la facture",
    "exercice": "exercice",
    "budget": "budget",
    "bordereau": "n° de bordereau",
    "mandat_number": "n° de mandat",
    "line_no": "n° de ligne",
    "supplier_name": "fournisseur",
    "supplier_siret": "SIRET du fournisseur",
    "supplier_siren": "SIREN du fournisseur",
    "amount_ht": "montant HT",
    "amount_tva": "montant TVA",
    "amount_ttc": "montant TTC",
    "amount": "montant",
    "nature": "imputation (nature)",
    "fonction": "fonction",
    "objet": "objet",
    "contract_number": "n° de marché",
    "service": "service",
    "category": "catégorie d'achat",
    "supplier_postcode": "code postal du fournisseur",
    "supplier_city": "ville du fournisseur",
    "buyer_siret": "SIRET de l'acheteur",
    "buyer_name": "acheteur",
}

AMOUNT_FIELDS = ("amount_ttc", "amount", "amount_ht")  # priority for mandats.amount
DATE_FIELDS = ("payment_date", "mandat_date", "invoice_date")  # priority for spend_date
SUPPLIER_FIELDS = ("supplier_name", "supplier_siret", "supplier_siren")
# fmt: off
TEXT_FIELDS = (
    "budget", "bordereau", "mandat_number", "line_no", "supplier_name", "supplier_postcode",
    "supplier_city", "buyer_name", "nature", "fonction", "objet", "contract_number", "service",
    "category",
)
# fmt: on
IGNORE = {"", "ignore", "ignorer", "-"}
DELIMITERS = (";", ",", "\t", "|")
HEADER_SEARCH_ROWS = 30
MIN_HEADER_SCORE = 2
CHUNK_ROWS = 50_000
TEMP_PREFIX = "empreinte_mandats_"
YEAR_MIN, YEAR_MAX = 1950, 2100
DATE_UNREADABLE = "date illisible (attendu JJ/MM/AAAA ou AAAA-MM-JJ)"

_SYNONYM_INDEX: dict[str, str] = {norm_header(s): f for f, syns in SYNONYMS.items() for s in syns}
_CURRENCY_SUFFIX = re.compile(r"(eneuros|eneur|euros|euro|eur)$")
_PAREN = re.compile(r"\([^)]*\)|\[[^\]]*\]")


def match_header(header: object) -> str | None:
    """The field a header means, from SYNONYMS, or None."""
    text = str(header or "")
    for candidate in (norm_header(text), norm_header(_PAREN.sub("", text))):
        if not candidate:
            continue
        for c in (candidate, _CURRENCY_SUFFIX.sub("", candidate)):
            if c in _SYNONYM_INDEX:
                return _SYNONYM_INDEX[c]
    return _match_keywords(norm_header(_PAREN.sub("", text)))


def _match_keywords(n: str) -> str | None:
    """Second chance for long headers ('Montant TTC payé', 'N° SIRET du titulaire')."""
    if not n:
        return None
    if "siret" in n:
        buyer = any(k in n for k in ("acheteur", "collectivite", "ordonnateur", "organisme"))
        return "buyer_siret" if buyer else "supplier_siret"
    if "siren" in n:
        return "supplier_siren"
    if n.startswith(("montant", "mt")):
        if "ttc" in n:
            return "amount_ttc"
        if "tva" in n:
            return "amount_tva"
        if n.endswith("ht") or "horstaxe" in n or "htmandate" in n:
            return "amount_ht"
    if n.startswith(("datedepaiement", "datepaiement", "datedereglement")):
        return "payment_date"
    if n.startswith(("datedemandat", "datemandat", "datedemission", "dateemission")):
        return "mandat_date"
    return None


# --- SQL ----------------------------------------------------------------------------

# Amounts: spaces (also U+00A0, U+202F, thin space), € / EUR, apostrophes as thousands
# marks are dropped; a leading or trailing minus or parentheses make it negative; the
# last of '.' / ',' is the decimal mark when both appear, a lone one is decimal.
MACROS_SQL = r"""
CREATE OR REPLACE TEMP MACRO _mnt_clean(s) AS
    replace(regexp_replace(upper(s), '[\s\x{00A0}\x{202F}\x{2009}''’]|€|EUROS?|EUR', '', 'g'), '−', '-');
CREATE OR REPLACE TEMP MACRO _mnt_num(b) AS CASE
    WHEN regexp_full_match(b, '[0-9]+([.,][0-9]+)?') THEN replace(b, ',', '.')
    WHEN regexp_full_match(b, '[.,][0-9]+') THEN '0' || replace(b, ',', '.')
    WHEN regexp_full_match(b, '[0-9]{1,3}(\.[0-9]{3})+(,[0-9]+)?') THEN replace(replace(b, '.', ''), ',', '.')
    WHEN regexp_full_match(b, '[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?') THEN replace(b, ',', '')
    END;
CREATE OR REPLACE TEMP MACRO _mnt_value(c) AS
    CASE WHEN starts_with(c, '(') <> ends_with(c, ')') THEN NULL
         WHEN starts_with(c, '-') OR ends_with(c, '-') OR starts_with(c, '(') THEN -1 ELSE 1 END
    * try_cast(_mnt_num(trim(c, '-+()')) AS DECIMAL(18, 2));
CREATE OR REPLACE TEMP MACRO m_parse_amount(s) AS _mnt_value(_mnt_clean(s));
CREATE OR REPLACE TEMP MACRO _date_any(s) AS CASE
    WHEN regexp_full_match(s, '[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([T ].*)?')
        THEN try_strptime(regexp_extract(s, '^[0-9-]+'), '%Y-%m-%d')
    WHEN regexp_full_match(s, '[0-9]{1,2}[/.-][0-9]{1,2}[/.-][0-9]{4}( .*)?')
        THEN try_strptime(regexp_replace(regexp_extract(s, '^[0-9/.-]+'), '[.-]', '/', 'g'), '%d/%m/%Y')
    WHEN regexp_full_match(s, '[0-9]{1,2}[/.-][0-9]{1,2}[/.-][0-9]{2}( .*)?')
        THEN try_strptime(regexp_replace(regexp_extract(s, '^[0-9/.-]+'), '[.-]', '/', 'g'), '%d/%m/%y')
    WHEN regexp_full_match(s, '[0-9]{4}/[0-9]{1,2}/[0-9]{1,2}( .*)?')
        THEN try_strptime(regexp_extract(s, '^[0-9/]+'), '%Y/%m/%d')
    WHEN regexp_full_match(s, '[0-9]{8}')
        THEN coalesce(try_strptime(s, '%Y%m%d'), try_strptime(s, '%d%m%Y'))
    WHEN regexp_full_match(s, '[0-9]{5}([.,][0-9]+)?')
         AND try_cast(replace(s, ',', '.') AS DOUBLE) BETWEEN 30000 AND 60000
        THEN DATE '1899-12-30' + CAST(floor(try_cast(replace(s, ',', '.') AS DOUBLE)) AS INTEGER)
    END::DATE;
CREATE OR REPLACE TEMP MACRO _date_ok(d) AS
    CASE WHEN d BETWEEN DATE '1950-01-01' AND DATE '2100-12-31' THEN d END;
CREATE OR REPLACE TEMP MACRO m_parse_date(s) AS _date_ok(_date_any(s));
CREATE OR REPLACE TEMP MACRO m_parse_year(s) AS CASE
    WHEN regexp_full_match(s, '[0-9]{4}([.,]0+)?') AND CAST(left(s, 4) AS INTEGER) BETWEEN 1950 AND 2100
        THEN CAST(left(s, 4) AS INTEGER) END;
CREATE OR REPLACE TEMP MACRO _cell(s) AS
    nullif(CASE WHEN starts_with(s, ' ') OR ends_with(s, ' ') THEN trim(s) ELSE s END, '');
CREATE OR REPLACE TEMP MACRO _key_part(s) AS
    CASE WHEN starts_with(s, '0') THEN coalesce(nullif(ltrim(s, '0'), ''), '0') ELSE s END;
"""

RAW_FIELDS = (
    *TEXT_FIELDS,
    "supplier_siret",
    "supplier_siren",
    "buyer_siret",
    *AMOUNT_FIELDS,
    "amount_tva",
    *DATE_FIELDS,
    "exercice",
)
TEMP_OBJECTS = (
    "_m_parsed",
    "_m_raw",
    "_m_sirets",
    "_m_sirens",
    "_m_names",
    "_m_buyers",
    "_m_headers",
    "_m_lines",
    "_m_dups",
    "_m_occ",
)


@dataclass
class Source:
    """Where the raw text cells are: a read_csv call or the temp table _m_raw."""

    fmt: str  # csv | xlsx | json
    headers: list[str]
    fields: dict[str, int]  # field -> column index
    from_sql: str = "_m_raw"
    params: dict = field(default_factory=dict)
    line_sql: str = "_line"  # a column of from_sql, or NULL when computed from rowid
    details: dict = field(default_factory=dict)
    csv_path: Path | None = None
    header_end_line: int = 0  # physical line on which the header ends (CSV)
    temp_files: list[Path] = field(default_factory=list)


def load(con: duckdb.DuckDBPyConnection, import_id: int, path: Path, options: Options) -> LoadCounts:
    """Load one mandats file (CSV, XLSX, JSON) into ``mandats``; see the module docstring."""
    path = Path(path)
    progress = options.progress or (lambda message, fraction: None)
    progress("Détection du format", 0.02)
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    kind = common.sniff_kind(head)
    src: Source | None = None
    try:
        if kind == "zip":
            common.check_xlsx(path)
            src = _stage_xlsx(con, path, options, progress)
        elif kind == "json":
            src = _stage_json(con, path, options)
        elif kind == "text":
            src = _stage_csv(path, options, progress)
        else:
            raise ImportRefused(_KIND_REFUSALS.get(kind, _KIND_REFUSALS["binary"]))
        return _load_source(con, import_id, src, options, progress)
    finally:
        if src is not None:
            for p in src.temp_files:
                p.unlink(missing_ok=True)


_KIND_REFUSALS = {
    "html": "Le fichier est une page web (HTML), pas un export de mandats : enregistrez l'export en CSV ou en Excel (.xlsx).",
    "xml": "Le fichier est un document XML, pas un export de mandats en CSV ou Excel (.xlsx).",
    "xls": "Le classeur est au format Excel 97-2003 (.xls) : enregistrez-le en .xlsx ou en CSV.",
    "parquet": "Un fichier Parquet n'est pas un export de mandats : fournissez un CSV ou un classeur Excel (.xlsx).",
    "binary": "Le fichier n'est pas un fichier texte (CSV) ni un classeur Excel (.xlsx) lisible.",
}


# --- header detection ----------------------------------------------------------------


def _resolve_mapping(mapping: dict[str, str] | None) -> dict[str, str | None]:
    """options.mapping as {norm_header(header): field or None (ignored)}."""
    if not mapping:
        return {}
    out: dict[str, str | None] = {}
    for header, target in mapping.items():
        t = str(target).strip()
        if t.lower() in IGNORE:
            out[norm_header(header)] = None
            continue
        fld = t if t in SYNONYMS else _SYNONYM_INDEX.get(norm_header(t))
        if fld is None:
            raise ImportRefused(
                f"Correspondance invalide « {header} » → « {target} » : les champs possibles sont "
                + ", ".join(SYNONYMS)
                + "."
            )
        out[norm_header(header)] = fld
    return out


def _map_headers(cells: list[str], user_map: dict[str, str | None]) -> tuple[dict[str, int], list[str]]:
    """{field: column index} for one header row (first column wins), and the ignored headers."""
    fields: dict[str, int] = {}
    by_user = {f for f in user_map.values() if f}
    ignored: list[str] = []
    # The user's mapping first, so that it wins over a synonym elsewhere in the row.
    for i, cell in enumerate(cells):
        n = norm_header(cell)
        if n in user_map and user_map[n] and user_map[n] not in fields:
            fields[user_map[n]] = i
    for i, cell in enumerate(cells):
        n = norm_header(cell)
        if n in user_map:
            continue
        fld = match_header(cell)
        if fld and fld not in fields and fld not in by_user:
            fields[fld] = i
        elif str(cell or "").strip():
            ignored.append(str(cell).strip())
    return fields, ignored


def _best_header(rows: list[list[str]], user_map: dict[str, str | None]) -> tuple[int, int]:
    """(row index, score) of the first row with the most recognised fields."""
    best, best_score = -1, 0
    for i, cells in enumerate(rows[:HEADER_SEARCH_ROWS]):
        fields, _ = _map_headers(cells, user_map)
        if len(fields) > best_score:
            best, best_score = i, len(fields)
    return best, best_score


def _check_required(headers: list[str], fields: dict[str, int]) -> None:
    missing = []
    if not any(f in fields for f in AMOUNT_FIELDS):
        missing.append("montant")
    if not any(f in fields for f in SUPPLIER_FIELDS):
        missing.append("fournisseur (nom ou SIRET)")
    if not missing:
        return
    raise ImportRefused(
        f"Colonne(s) obligatoire(s) introuvable(s) : {' et '.join(missing)} ; en-têtes lus : "
        f"{_quote_list(headers)} ; en-têtes attendus : {_expected()} "
        "(ou indiquez la correspondance avec --mapping)."
    )


def _refuse_no_header(first_rows: list[list[str]]) -> None:
    seen = next((r for r in first_rows if any(str(c or "").strip() for c in r)), [])
    raise ImportRefused(
        "Aucune ligne d'en-tête reconnue dans les premières lignes du fichier (en-têtes lus : "
        f"{_quote_list(seen)}) ; en-têtes attendus : {_expected()} "
        "(ou indiquez la correspondance avec --mapping)."
    )


def _expected() -> str:
    return (
        "pour le montant « Montant TTC », « Montant HT », « Montant », « Montant mandaté », "
        "« Dépense achat (€) », et pour le fournisseur « Fournisseur », « Tiers », "
        "« Raison sociale », « Nom », « SIRET »"
    )


def _quote_list(cells: list, limit: int = 25) -> str:
    shown = [f"« {str(c).strip()[:60]} »" for c in cells if str(c or "").strip()][:limit]
    more = " …" if len([c for c in cells if str(c or "").strip()]) > limit else ""
    return (", ".join(shown) + more) if shown else "aucun"


def _check_dates(fields: dict[str, int], options: Options) -> None:
    if any(f in fields for f in DATE_FIELDS) or "exercice" in fields or _opt_exercice(options):
        return
    raise ImportRefused(
        "Le fichier n'a ni colonne de date ni colonne d'exercice : indiquez l'exercice des achats "
        "(option --exercice 2025 en ligne de commande, ou le champ Exercice de la page Import)."
    )


def _opt_exercice(options: Options) -> int | None:
    value = (options.extra or {}).get("exercice")
    if value in (None, ""):
        return None
    try:
        year = int(value)
    except (TypeError, ValueError):
        raise ImportRefused(f"Exercice invalide : « {value} » (attendu une année, ex. 2025).") from None
    if not YEAR_MIN <= year <= YEAR_MAX:
        raise ImportRefused(f"Exercice invalide : « {value} » (attendu une année, ex. 2025).")
    return year


# --- CSV -----------------------------------------------------------------------------


def _stage_csv(path: Path, options: Options, progress) -> Source:
    encoding = common.detect_file_encoding(path)
    with open(path, "rb") as f:
        raw_head = f.read(1 << 18)
    head = _decode_head(raw_head, encoding)
    if _looks_binary(head):
        raise ImportRefused(_KIND_REFUSALS["binary"])
    user_map = _resolve_mapping(options.mapping)
    best = None  # ((score, -row, -delimiter rank), delimiter, rows, row index, record end lines)
    first_rows: list[list[str]] = []
    for rank, delim in enumerate(DELIMITERS):
        rows, ends = _head_records(head, delim)
        if rank == 0:
            first_rows = rows
        idx, score = _best_header(rows, user_map)
        if idx < 0:
            continue
        key = (score, -idx, -rank)
        if best is None or key > best[0]:
            best = (key, delim, rows, idx, ends)
    if best is None or best[0][0] < MIN_HEADER_SCORE:
        _refuse_no_header(first_rows)
    _, delim, rows, idx, ends = best
    header_end = ends[idx]  # the physical line the header ends on (read_csv skips up to it)
    headers = [str(c or "").strip() for c in rows[idx]]
    fields, ignored = _map_headers(headers, user_map)
    _check_required(headers, fields)
    _check_dates(fields, options)

    progress("Conversion en UTF-8", 0.05)
    utf8_path, temp = _to_utf8(path, encoding)
    ncols = len(headers)
    src = Source(
        fmt="csv",
        headers=headers,
        fields=fields,
        line_sql="NULL",
        csv_path=utf8_path,
        header_end_line=header_end,
        temp_files=[temp] if temp else [],
    )
    has_quote, nlines = _scan_quotes_and_lines(utf8_path)
    starts, embedded = (None, False)
    if has_quote:
        starts, embedded = _record_starts(utf8_path, header_end)
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(ncols)) + "}"
    # Every option is ours (whitelisted delimiter, generated column names); the path is
    # a parameter.
    src.from_sql = (
        "read_csv($csv_path, delim = $csv_delim, quote = '\"', escape = '\"', header = false, "
        f"skip = {int(header_end)}, auto_detect = false, columns = {columns}, strict_mode = false, "
        f"null_padding = true, parallel = {'false' if embedded else 'true'}, "
        "max_line_size = 8388608)"
    )
    src.params = {"csv_path": str(utf8_path), "csv_delim": delim}
    src.details = {
        "format": "csv",
        "encoding": encoding,
        "delimiter": {"\t": "tab"}.get(delim, delim),
        "header_line": ends[idx - 1] + 1 if idx > 0 else 1,
        "ignored_columns": ignored,
        "_physical_lines": nlines,
        "_starts": starts,
    }
    return src


def _decode_head(raw: bytes, encoding: str) -> str:
    if encoding in ("cp1252", "latin-1"):
        text = raw.decode("cp1252", errors=_LATIN1_FALLBACK)
    else:
        text = raw.decode(encoding, errors="replace")
    return text[1:] if text.startswith("\ufeff") else text


def _looks_binary(text: str) -> bool:
    sample = text[:8192]
    if not sample:
        return False
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\r\n\f")
    return controls > max(3, len(sample) // 100) or sample.count("\ufffd") > len(sample) // 20


def _head_records(head: str, delim: str) -> tuple[list[list[str]], list[int]]:
    """The first records of the head with the physical line each ends on."""
    cut = head
    if len(head) >= (1 << 17) and "\n" in head:
        cut = head[: head.rfind("\n") + 1]
    reader = csv.reader(io.StringIO(cut, newline=""), delimiter=delim, quotechar='"')
    rows, ends = [], []
    try:
        for row in reader:
            rows.append(row)
            ends.append(reader.line_num)
            if len(rows) >= HEADER_SEARCH_ROWS:
                break
    except csv.Error:
        pass
    return rows, ends


def _to_utf8(path: Path, encoding: str) -> tuple[Path, Path | None]:
    """A UTF-8 file DuckDB can read: the file itself, or a transcoded temporary copy.

    A UTF-8 BOM sits on the header line, which read_csv skips. Windows-1252 (also when
    detected as Latin-1: French "latin-1" files are Windows-1252 in practice) goes
    through iconv when the system has it, about 3 times faster than Python's codec; the
    five bytes Windows-1252 leaves undefined are read as Latin-1.
    """
    if encoding in ("utf-8", "utf-8-sig"):
        return path, None
    _sweep_stale_copies()
    fd, tmp = tempfile.mkstemp(suffix=".csv", prefix=TEMP_PREFIX)
    out = Path(tmp)
    try:
        iconv = shutil.which("iconv")
        if iconv and encoding in ("cp1252", "latin-1"):
            with os.fdopen(fd, "wb") as f:
                fd = None
                rc = subprocess.run(
                    [iconv, "-f", "CP1252", "-t", "UTF-8", str(path)],
                    stdout=f,
                    stderr=subprocess.DEVNULL,
                    check=False,
                ).returncode
            if rc == 0:
                return out, out
        codec = "cp1252" if encoding == "latin-1" else encoding
        dec = codecs.getincrementaldecoder(codec)(errors=_LATIN1_FALLBACK)
        with open(path, "rb") as src, open(out, "wb") as dst:
            for chunk in iter(lambda: src.read(1 << 23), b""):
                dst.write(dec.decode(chunk).encode("utf-8"))
            dst.write(dec.decode(b"", final=True).encode("utf-8"))
        return out, out
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    finally:
        if fd is not None:
            os.close(fd)


def _sweep_stale_copies(max_age_s: float = 86_400) -> None:
    """Remove UTF-8 copies left by imports killed more than a day ago (SIGKILL skips the
    clean-up in ``load``)."""
    now = time.time()
    for old in Path(tempfile.gettempdir()).glob(TEMP_PREFIX + "*.csv"):
        try:
            if now - old.stat().st_mtime > max_age_s:
                old.unlink()
        except OSError:
            pass


def _latin1_fallback(exc: UnicodeDecodeError) -> tuple[str, int]:
    return exc.object[exc.start : exc.end].decode("latin-1"), exc.end


_LATIN1_FALLBACK = "empreinte-latin1"
codecs.register_error(_LATIN1_FALLBACK, _latin1_fallback)


def _scan_quotes_and_lines(path: Path) -> tuple[bool, int]:
    """(whether the file holds a double quote, its number of physical lines)."""
    n, has_quote, last = 0, False, b"\n"
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            n += chunk.count(b"\n")
            has_quote = has_quote or b'"' in chunk
            last = chunk[-1:]
    if last != b"\n":
        n += 1
    return has_quote, n


def _record_starts(path: Path, header_end: int) -> tuple[list[int], bool]:
    """First physical line of each record after the header, and whether any record spans lines.

    A line with an odd number of quotes opens (or closes) a quoted field; blank lines
    outside quotes are skipped, as read_csv does.
    """
    starts: list[int] = []
    inside, embedded = False, False
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if lineno <= header_end:
                continue
            if not inside:
                if line.strip(b"\r\n"):
                    starts.append(lineno)
            else:
                embedded = True
            if line.count(b'"') & 1:
                inside = not inside
    return starts, embedded


# --- XLSX and JSON -------------------------------------------------------------------


def _cell_text(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, dt.datetime):
        if v.time() == dt.time(0, 0):
            return v.date().isoformat()
        return v.isoformat(sep=" ")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, float):
        if v != v:
            return None
        if v.is_integer() and abs(v) < 1e17:
            return str(int(v))  # SIRET read as a float, exercice 2025.0
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, dt.time):
        return v.isoformat()
    s = str(v)
    return s if s.strip() else None


def _create_raw(con: duckdb.DuckDBPyConnection, ncols: int) -> None:
    cols = ", ".join(f"c{i} VARCHAR" for i in range(ncols))
    con.execute(f"CREATE OR REPLACE TEMP TABLE _m_raw (_line BIGINT, {cols})")


def _append_raw(con: duckdb.DuckDBPyConnection, lines: list[int], rows: list[list], ncols: int) -> None:
    data = {"_line": pa.array(lines, type=pa.int64())}
    for i in range(ncols):
        data[f"c{i}"] = pa.array([r[i] if i < len(r) else None for r in rows], type=pa.string())
    con.register("_m_chunk", pa.table(data))
    try:
        con.execute("INSERT INTO _m_raw SELECT * FROM _m_chunk")
    finally:
        con.unregister("_m_chunk")


def _stage_xlsx(con: duckdb.DuckDBPyConnection, path: Path, options: Options, progress) -> Source:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception:
        raise ImportRefused("Le classeur Excel est illisible ou tronqué.") from None
    try:
        user_map = _resolve_mapping(options.mapping)
        names = list(wb.sheetnames)
        preferred = [
            n for n in names if any(k in norm_header(n) for k in ("mandat", "depense", "achat", "paiement"))
        ]
        order = preferred + [n for n in names if n not in preferred]
        chosen = None
        first_rows: list[list[str]] = []
        for name in order:
            ws = wb[name]
            rows = []
            for row in ws.iter_rows(max_row=HEADER_SEARCH_ROWS, values_only=True):
                rows.append([_cell_text(v) or "" for v in row])
            if not first_rows:
                first_rows = rows
            idx, score = _best_header(rows, user_map)
            if idx >= 0 and score >= MIN_HEADER_SCORE:
                chosen = (name, idx, rows[idx])
                break
        if chosen is None:
            _refuse_no_header(first_rows)
        name, idx, header_cells = chosen
        while header_cells and not header_cells[-1].strip():
            header_cells = header_cells[:-1]
        headers = [c.strip() for c in header_cells]
        fields, ignored = _map_headers(headers, user_map)
        _check_required(headers, fields)
        _check_dates(fields, options)
        ncols = len(headers)
        _create_raw(con, ncols)
        ws = wb[name]
        total = ws.max_row or 0
        progress("Lecture du classeur", 0.05)
        lines: list[int] = []
        rows: list[list] = []
        header_row = idx + 1
        for rownum, row in enumerate(
            ws.iter_rows(min_row=header_row + 1, values_only=True), start=header_row + 1
        ):
            cells = [_cell_text(v) for v in row[:ncols]]
            if not any(c is not None for c in cells):
                continue
            lines.append(rownum)
            rows.append(cells)
            if len(rows) >= CHUNK_ROWS:
                _append_raw(con, lines, rows, ncols)
                lines, rows = [], []
                if total:
                    progress("Lecture du classeur", 0.05 + 0.4 * min(1.0, rownum / total))
        if rows:
            _append_raw(con, lines, rows, ncols)
    except (ImportRefused, duckdb.Error):
        raise
    except Exception:
        # openpyxl fails lazily on a damaged sheet (bad XML, missing part).
        raise ImportRefused("Le classeur Excel est illisible ou endommagé.") from None
    finally:
        wb.close()
    return Source(
        fmt="xlsx",
        headers=headers,
        fields=fields,
        details={"format": "xlsx", "sheet": name, "header_line": header_row, "ignored_columns": ignored},
    )


def _stage_json(con: duckdb.DuckDBPyConnection, path: Path, options: Options) -> Source:
    """A JSON array of purchases (flat objects, or Django fixture rows with 'fields')."""
    with open(path, "rb") as f:
        encoding = common.detect_encoding(f.read(4096))
    try:
        with open(path, encoding=encoding) as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError):
        raise ImportRefused("Le fichier JSON est illisible (syntaxe invalide).") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else [data]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ImportRefused("Le fichier JSON doit être une liste d'achats (objets).")
    records = [r["fields"] if isinstance(r.get("fields"), dict) else r for r in data]
    headers: list[str] = []
    seen = set()
    for r in records:
        for k in r:
            if k not in seen:
                seen.add(k)
                headers.append(str(k))
    user_map = _resolve_mapping(options.mapping)
    fields, ignored = _map_headers(headers, user_map)
    if len(fields) < MIN_HEADER_SCORE:
        _refuse_no_header([headers])
    _check_required(headers, fields)
    _check_dates(fields, options)
    ncols = len(headers)
    _create_raw(con, ncols)
    for start in range(0, len(records), CHUNK_ROWS):
        chunk = records[start : start + CHUNK_ROWS]
        rows = [
            [
                _cell_text(v) if not isinstance(v, (dict, list)) else json.dumps(v, ensure_ascii=False)
                for v in (r.get(h) for h in headers)
            ]
            for r in chunk
        ]
        _append_raw(con, list(range(start + 1, start + 1 + len(chunk))), rows, ncols)
    return Source(
        fmt="json",
        headers=headers,
        fields=fields,
        details={"format": "json", "ignored_columns": ignored, "line_numbers": "rang dans la liste"},
    )


# --- parsing and loading -------------------------------------------------------------


def _parse_sql(src: Source) -> str:
    """CREATE _m_parsed: one row per record, raw cells and the values the fast paths read.

    Fast paths: '1234,56' / '1 234,56' / '1234.56' for amounts, '25/11/2026' for dates,
    '2025' for the exercice. ``_fallback_sql`` then runs the full macros (m_parse_amount,
    m_parse_date, m_parse_year) on the cells left unread only, which keeps a macro's
    repeated sub-expressions off the common path.
    """
    f = src.fields
    present_dates = [n for n in DATE_FIELDS if n in f]

    def raw(name: str) -> str:
        return f"_cell(c{f[name]}) AS r_{name}" if name in f else f"NULL::VARCHAR AS r_{name}"

    raw_cols = ",\n            ".join(raw(n) for n in RAW_FIELDS)
    empty = " AND ".join(f"r_{n} IS NULL" for n in f) or "true"
    stage = [f"({empty}) AS is_empty"]
    stage += [f"try_strptime(r_{n}, '%d/%m/%Y')::DATE AS d_{n}" for n in present_dates]
    stage += ["try_cast(r_exercice AS INTEGER) AS x_exercice"] if "exercice" in f else []
    values = [
        f"try_cast(replace(replace(replace(r_{n}, chr(160), ''), ' ', ''), ',', '.') AS DECIMAL(18, 2)) AS v_{n}"
        if n in f
        else f"NULL::DECIMAL(18, 2) AS v_{n}"
        for n in (*AMOUNT_FIELDS, "amount_tva")
    ]
    values += [
        f"CASE WHEN d_{n} BETWEEN DATE '{YEAR_MIN}-01-01' AND DATE '{YEAR_MAX}-12-31' THEN d_{n} END AS v_{n}"
        if n in f
        else f"NULL::DATE AS v_{n}"
        for n in DATE_FIELDS
    ]
    values.append(
        f"CASE WHEN x_exercice BETWEEN {YEAR_MIN} AND {YEAR_MAX} THEN x_exercice END AS v_exercice"
        if "exercice" in f
        else "NULL::INTEGER AS v_exercice"
    )
    # A raw amount or date is kept only where the fast path could not read it (for the
    # fall-back and the rejection report): fewer strings to store.
    parsed = [n for n in (*AMOUNT_FIELDS, "amount_tva", *DATE_FIELDS, "exercice") if n in f]
    dropped = [f"d_{n}" for n in present_dates] + (["x_exercice"] if "exercice" in f else [])
    dropped += [f"r_{n}" for n in parsed]
    kept = [f"CASE WHEN v_{n} IS NULL THEN r_{n} END AS r_{n}" for n in parsed]
    return f"""
    CREATE OR REPLACE TEMP TABLE _m_parsed AS
    WITH t AS (
        SELECT {src.line_sql}::BIGINT AS src_line,
            {raw_cols}
        FROM {src.from_sql}
    ), c AS (
        SELECT *, {", ".join(stage)} FROM t
    ), v AS (
        SELECT *, {", ".join(values)} FROM c
    )
    SELECT * EXCLUDE ({", ".join(dropped)}){"".join(", " + k for k in kept)} FROM v
    """


def _fallback_sql(src: Source) -> list[str]:
    """UPDATEs reading, with the full macros, the cells the fast paths left unread."""
    f = src.fields
    out = [
        f"UPDATE _m_parsed SET v_{n} = m_parse_amount(r_{n}) WHERE v_{n} IS NULL AND r_{n} IS NOT NULL"
        for n in (*AMOUNT_FIELDS, "amount_tva")
        if n in f
    ]
    out += [
        f"UPDATE _m_parsed SET v_{n} = m_parse_date(r_{n}) WHERE v_{n} IS NULL AND r_{n} IS NOT NULL"
        for n in DATE_FIELDS
        if n in f
    ]
    if "exercice" in f:
        out.append(
            "UPDATE _m_parsed SET v_exercice = m_parse_year(r_exercice) "
            "WHERE v_exercice IS NULL AND r_exercice IS NOT NULL"
        )
    return out


def _rows_view_sql(src: Source, opt_exercice: int | None) -> str:
    """CREATE the view _m_rows: _m_parsed with amount, spend date, exercice and rejection."""
    f = src.fields
    present_amounts = [n for n in AMOUNT_FIELDS if n in f]
    present_dates = [n for n in DATE_FIELDS if n in f]
    dated = bool(present_dates)
    amount_src = (
        "CASE "
        + " ".join(f"WHEN v_{n} IS NOT NULL OR r_{n} IS NOT NULL THEN '{n}'" for n in present_amounts)
        + " END"
    )
    amount_value = "CASE amount_src " + " ".join(f"WHEN '{n}' THEN v_{n}" for n in present_amounts) + " END"
    spend = ("coalesce(" + ", ".join(f"v_{n}" for n in present_dates) + ")") if dated else "NULL::DATE"
    opt_ex = "NULL::INTEGER" if opt_exercice is None else str(int(opt_exercice))
    years = ", ".join(f"year(v_{n})" for n in ("mandat_date", *present_dates) if n in f) or "NULL::INTEGER"

    # First failing check wins: amount, then dates, then exercice (dateless files). An
    # unreadable amount only matters in the column that gives mandats.amount.
    checks = [
        (
            "amount_src IS NOT NULL AND amount IS NULL",
            "amount_src",
            "CASE amount_src " + " ".join(f"WHEN '{n}' THEN r_{n}" for n in present_amounts) + " END",
            "'montant illisible'",
        ),
        ("amount_src IS NULL", f"'{present_amounts[0]}'", "NULL", "'montant absent'"),
    ]
    for n in present_dates:
        checks.append((f"r_{n} IS NOT NULL AND v_{n} IS NULL", f"'{n}'", f"r_{n}", f"'{DATE_UNREADABLE}'"))
    if dated:
        checks.append(("spend_date IS NULL", f"'{present_dates[0]}'", "NULL", "'date absente'"))
    else:
        checks.append(
            (
                "exercice IS NULL",
                "'exercice'",
                "r_exercice",
                "CASE WHEN r_exercice IS NULL THEN 'exercice absent' ELSE 'exercice illisible' END",
            )
        )
    rej_field = "CASE " + " ".join(f"WHEN {c} THEN {fld}" for c, fld, _, _ in checks) + " END"
    rej_raw = "CASE " + " ".join(f"WHEN {c} THEN {r}" for c, _, r, _ in checks) + " END"
    rej_reason = "CASE " + " ".join(f"WHEN {c} THEN {why}" for c, _, _, why in checks) + " END"
    return f"""
    CREATE OR REPLACE TEMP VIEW _m_rows AS
    WITH a AS (
        SELECT rowid AS _rid, *, {amount_src} AS amount_src FROM _m_parsed
    ), b AS (
        SELECT *, {amount_value} AS amount, {spend} AS spend_date,
            coalesce(v_exercice, {opt_ex}, {years}) AS exercice
        FROM a
    )
    SELECT *, {rej_field} AS rej_field, {rej_raw} AS rej_raw, {rej_reason} AS rej_reason FROM b
    """


def _lookup_tables(con: duckdb.DuckDBPyConnection) -> None:
    """SIRET / SIREN / names checked in Python on the distinct values only.

    Rejected lines are looked up too: filtering them out would cost more than the few
    extra distinct values.
    """

    def distinct(column: str) -> list[str]:
        sql = f"SELECT DISTINCT {column} FROM _m_parsed WHERE {column} IS NOT NULL"
        return [r[0] for r in con.execute(sql).fetchall()]

    # SIRET / SIREN checked in SQL (ids.clean_siret_table_sql, the tested twin of stdnum):
    # 100k distinct values in Python cost seconds, in SQL a few hundred milliseconds.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _m_sirets AS "
        + ids.clean_siret_table_sql("SELECT r_supplier_siret FROM _m_parsed")
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _m_sirens AS SELECT raw, siren FROM ("
        + ids.clean_siret_table_sql("SELECT r_supplier_siren FROM _m_parsed")
        + ")"
    )
    buyers = [(b, ids.clean_siret(b) or ids.digits(b) or b) for b in distinct("r_buyer_siret")]
    _register(con, "_m_buyers", ("raw", "siret"), buyers)
    names = con.execute(
        """
        SELECT DISTINCT p.r_supplier_name FROM _m_parsed p
        LEFT JOIN _m_sirets s ON s.raw = p.r_supplier_siret
        LEFT JOIN _m_sirens n ON n.raw = p.r_supplier_siren
        WHERE p.r_supplier_name IS NOT NULL AND s.siren IS NULL AND n.siren IS NULL
        """
    ).fetchall()
    _register(con, "_m_names", ("raw", "norm"), [(r[0], norm_name(r[0])) for r in names])


def _register(con: duckdb.DuckDBPyConnection, name: str, cols: tuple[str, ...], rows: list[tuple]) -> None:
    """A small temp table of strings from Python rows (lists as parameters: no pandas import)."""
    select = ", ".join(f"unnest(${c}::VARCHAR[]) AS {c}" for c in cols)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT {select}",
        {c: [r[i] for r in rows] for i, c in enumerate(cols)},
    )


# fmt: off
INSERT_COLUMNS = (
    "import_id", "line_number", "natural_key", "buyer_siret", "buyer_name", "exercice", "budget",
    "bordereau", "mandat_number", "line_no", "mandat_date", "payment_date", "invoice_date",
    "spend_date", "date_imputed", "supplier_key", "supplier_siret", "supplier_siren",
    "supplier_id_raw", "supplier_name", "supplier_postcode", "supplier_city", "supplier_identified",
    "amount", "amount_basis", "amount_ht", "amount_tva", "amount_ttc", "nature", "fonction",
    "objet", "contract_number", "service", "category",
)
# fmt: on


def _base_key(src: Source) -> str:
    """The natural key of a line before its occurrence suffix (columns of _keyed_sql)."""
    f = src.fields
    hash_parts = [
        "scope", "exercice", "spend_date", "v_mandat_date", "v_invoice_date", "supplier_key",
        "amount", "amount_src", "v_amount_ht", "r_nature", "r_fonction", "r_objet",
        "r_contract_number", "r_service", "r_category", "r_budget", "_key_part(r_bordereau)",
        "_key_part(r_line_no)",
    ]  # fmt: skip
    hash_key = (
        "'H|' || md5(concat_ws('|', "
        + ", ".join(f"coalesce(CAST({x} AS VARCHAR), '')" for x in hash_parts)
        + "))"
    )
    if "mandat_number" not in f:
        return hash_key
    mandat_parts = [
        "scope", "r_budget", "CAST(exercice AS VARCHAR)", "_key_part(r_bordereau)",
        "_key_part(r_mandat_number)", "_key_part(r_line_no)",
    ]  # fmt: skip
    if "line_no" not in f:
        # Without line numbers, the lines of one mandat differ by imputation and amount.
        mandat_parts += ["r_nature", "CAST(amount AS VARCHAR)"]
    mandat_key = "'M|' || concat_ws('|', " + ", ".join(f"coalesce({x}, '')" for x in mandat_parts) + ")"
    return f"CASE WHEN r_mandat_number IS NOT NULL THEN {mandat_key} ELSE {hash_key} END"


def _keyed_sql(src: Source, line_expr: str, lines_join: str, *, keys_only: bool = False) -> str:
    """SELECT of the accepted lines with line number, supplier key, identifiers and base key.

    ``keys_only``: for the repeated-key check, which reads base_key only. The line numbers
    are left out (the join with _m_lines is one to one), and a line with a mandat number
    (its key holds no supplier) does not look its supplier up.
    """
    lines = "" if keys_only else lines_join
    line = "NULL::BIGINT" if keys_only else line_expr
    probe = {c: f"p.{c}" for c in ("r_supplier_siret", "r_supplier_siren", "r_supplier_name")}
    if keys_only and "mandat_number" in src.fields:
        probe = {c: f"CASE WHEN p.r_mandat_number IS NULL THEN p.{c} END" for c in probe}
    return f"""
    SELECT *, {_base_key(src)} AS base_key FROM (
        SELECT p.*, {line} AS line_number,
            si.siret AS supplier_siret,
            coalesce(si.siren, sn.siren) AS supplier_siren,
            b.siret AS buyer_siret,
            CASE WHEN si.siret IS NOT NULL THEN si.siret
                 WHEN coalesce(si.siren, sn.siren) IS NOT NULL THEN 'SIREN:' || coalesce(si.siren, sn.siren)
                 WHEN nullif(nm.norm, '') IS NOT NULL THEN 'NOM:' || nm.norm
                 ELSE 'INCONNU' END AS supplier_key,
            coalesce(b.siret, '') AS scope
        FROM _m_rows p {lines}
        LEFT JOIN _m_sirets si ON si.raw = {probe["r_supplier_siret"]}
        LEFT JOIN _m_sirens sn ON sn.raw = {probe["r_supplier_siren"]}
        LEFT JOIN _m_names nm ON nm.raw = {probe["r_supplier_name"]}
        LEFT JOIN _m_buyers b ON b.raw = p.r_buyer_siret
        WHERE NOT p.is_empty AND p.rej_reason IS NULL
    )
    """


def _occurrence_sql(keyed: str, keys: str) -> tuple[str, str]:
    """(repeated base keys, occurrence numbers of their lines): repeated keys get #2, #3…
    in file order. Most files have none: the check groups the 64-bit hashes of the keys
    (``keys``: _keyed_sql(keys_only=True)), and only the lines whose hash is repeated are
    numbered, by their exact key."""
    dups = f"CREATE OR REPLACE TEMP TABLE _m_dups AS SELECT hash(base_key) AS h FROM ({keys}) GROUP BY h HAVING count(*) > 1"
    occ = f"""
    CREATE OR REPLACE TEMP TABLE _m_occ AS
    SELECT _rid, row_number() OVER (PARTITION BY base_key ORDER BY line_number) AS occurrence
    FROM ({keyed}) WHERE hash(base_key) IN (SELECT h FROM _m_dups)
    """
    return dups, occ


def _insert_sql(src: Source, keyed: str, repeated: bool, exercices: bool = False) -> str:
    """INSERT the accepted lines whose natural key is not already in mandats (``repeated``:
    some base keys are repeated, their occurrence numbers are in _m_occ).

    ``exercices``: every accepted line has an exercice, between $ex_min and $ex_max. The
    natural key holds the exercice, so only the stored lines of those exercices can share
    a key: the check reads them alone (a database of ten years is not read whole by the
    import of the eleventh)."""
    dated = any(n in src.fields for n in DATE_FIELDS)
    occurrence, occ_join = "1", ""
    if repeated:
        occurrence, occ_join = "coalesce(o.occurrence, 1)", "LEFT JOIN _m_occ o ON o._rid = k._rid"
    spend = "spend_date" if dated else "make_date(exercice, 12, 31)"
    return f"""
    INSERT INTO mandats ({", ".join(INSERT_COLUMNS)})
    WITH n AS (
        SELECT k.*, k.base_key || '#' || {occurrence} AS natural_key
        FROM ({keyed}) k {occ_join}
    )
    SELECT $import_id, line_number, n.natural_key, buyer_siret, r_buyer_name, exercice,
        r_budget, r_bordereau, r_mandat_number, r_line_no, v_mandat_date, v_payment_date,
        v_invoice_date, {spend}, {"false" if dated else "true"}, supplier_key,
        supplier_siret, supplier_siren, coalesce(r_supplier_siret, r_supplier_siren),
        r_supplier_name,
        CASE WHEN length(r_supplier_postcode) = 4 AND try_cast(r_supplier_postcode AS INTEGER) IS NOT NULL
             THEN '0' || r_supplier_postcode ELSE r_supplier_postcode END,
        r_supplier_city, supplier_siret IS NOT NULL OR supplier_siren IS NOT NULL,
        amount, CASE WHEN amount_src = 'amount_ht' THEN 'HT' ELSE 'TTC' END,
        v_amount_ht, v_amount_tva, coalesce(v_amount_ttc, v_amount),
        r_nature, r_fonction, r_objet, r_contract_number, r_service, r_category
    FROM n ANTI JOIN (
        SELECT natural_key FROM mandats {"WHERE exercice BETWEEN $ex_min AND $ex_max" if exercices else ""}
    ) m ON m.natural_key = n.natural_key
    """


def _load_source(
    con: duckdb.DuckDBPyConnection, import_id: int, src: Source, options: Options, progress
) -> LoadCounts:
    con.execute(MACROS_SQL)
    opt_ex = _opt_exercice(options)
    # A workbook was read into _m_raw already (progress up to 0.45); a CSV is read now.
    progress("Lecture des lignes", 0.15 if src.fmt == "csv" else 0.5)
    try:
        con.execute(_parse_sql(src), src.params)
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise ImportRefused(f"Le fichier n'a pas pu être lu comme un CSV ({first}).") from None
    for sql in _fallback_sql(src):
        con.execute(sql)
    con.execute(_rows_view_sql(src, opt_ex))

    details = dict(src.details)
    starts = details.pop("_starts", None)
    nlines = details.pop("_physical_lines", None)
    line_expr, lines_join = "p.src_line", ""
    if src.fmt == "csv":
        line_expr, lines_join, exact = _csv_line_numbers(con, src, starts, nlines)
        details["line_numbers"] = "exact" if exact else "approx"
    else:
        details.setdefault("line_numbers", "exact")

    # with the exercices of the accepted lines, for the repeated-line check (_insert_sql)
    counts_row = con.execute(
        "SELECT count(*) FILTER (WHERE NOT is_empty), count(*) FILTER (WHERE NOT is_empty AND rej_reason IS NOT NULL),"
        " count(*) FILTER (WHERE is_empty), min(exercice) FILTER (WHERE NOT is_empty AND rej_reason IS NULL),"
        " max(exercice) FILTER (WHERE NOT is_empty AND rej_reason IS NULL),"
        " count(*) FILTER (WHERE NOT is_empty AND rej_reason IS NULL AND exercice IS NULL) FROM _m_rows"
    ).fetchall()[0]
    rows_read, rows_rejected, empty_rows, ex_min, ex_max, ex_null = counts_row
    if rows_read == 0:
        raise ImportRefused("Le fichier ne contient aucune ligne de données après la ligne d'en-tête.")
    header_of = {fld: src.headers[i] for fld, i in src.fields.items()}
    if rows_rejected == rows_read:
        first = con.execute(
            f"SELECT {line_expr}, rej_field, rej_raw, rej_reason "
            f"FROM _m_rows p {lines_join} WHERE NOT is_empty ORDER BY 1 LIMIT 1"
        ).fetchall()[0]
        col = header_of.get(first[1], first[1])
        raw = f" « {first[2]} »" if first[2] is not None else ""
        raise ImportRefused(
            f"Aucune des {rows_read} lignes n'a pu être lue (ligne {first[0]}, colonne « {col} »{raw} : "
            f"{first[3]}) : le fichier est refusé."
        )

    _register(con, "_m_headers", ("field", "header"), list(header_of.items()))
    con.execute(
        f"""
        INSERT INTO rejected_rows (import_id, line_number, column_name, raw_value, reason)
        SELECT $i, {line_expr}, coalesce(h.header, p.rej_field), p.rej_raw, p.rej_reason
        FROM _m_rows p {lines_join} LEFT JOIN _m_headers h ON h.field = p.rej_field
        WHERE NOT p.is_empty AND p.rej_reason IS NOT NULL
        ORDER BY 2 LIMIT {int(common.MAX_REJECTS_STORED)}
        """,
        {"i": import_id},
    )

    progress("Contrôle des SIRET", 0.6)
    _lookup_tables(con)
    progress("Enregistrement des lignes", 0.7)
    # The keys are computed twice (hashed for the repeated-key check, then in the INSERT)
    # rather than stored: copying every parsed line into a keyed table cost more.
    keyed = _keyed_sql(src, line_expr, lines_join)
    dups_sql, occ_sql = _occurrence_sql(keyed, _keyed_sql(src, line_expr, lines_join, keys_only=True))
    con.execute(dups_sql)
    repeated = con.execute("SELECT count(*) FROM _m_dups").fetchall()[0][0] > 0
    if repeated:
        con.execute(occ_sql)
    exercices = ex_min is not None and not ex_null
    params = {"import_id": import_id}
    if exercices:
        params.update(ex_min=int(ex_min), ex_max=int(ex_max))
    loaded = _insert_unordered(con, _insert_sql(src, keyed, repeated, exercices), params)
    total = con.execute(
        """
        SELECT CAST(sum(amount) AS DOUBLE), count(*) FILTER (WHERE NOT supplier_identified),
               count(DISTINCT supplier_key) FILTER (WHERE NOT supplier_identified),
               CAST(sum(amount) FILTER (WHERE NOT supplier_identified) AS DOUBLE),
               count(*) FILTER (WHERE amount_basis = 'TTC'), count(*) FILTER (WHERE amount_basis = 'HT')
        FROM mandats WHERE import_id = $i
        """,
        {"i": import_id},
    ).fetchall()[0]
    amount_total, unid_lines, unid_suppliers, unid_amount, n_ttc, n_ht = total
    _drop_temp(con)

    present_dates = [n for n in DATE_FIELDS if n in src.fields]
    details.update(
        {
            "columns": header_of,
            "amount_basis": _basis_label(src.fields, n_ttc, n_ht),
            "amount_lines": {"TTC": n_ttc, "HT": n_ht},
            "date_field": (
                f"{FIELD_LABELS[present_dates[0]]} (« {header_of[present_dates[0]]} »)"
                if present_dates
                else "aucune : 31/12 de l'exercice (date imputée)"
            ),
            "unidentified_lines": unid_lines,
            "unidentified_suppliers": unid_suppliers,
            "unidentified_amount": round(unid_amount or 0.0, 2),
            "empty_lines": empty_rows,
        }
    )
    progress("Lignes enregistrées", 1.0)
    return LoadCounts(
        rows_read=rows_read,
        rows_loaded=loaded,
        rows_rejected=rows_rejected,
        rows_duplicate=rows_read - rows_rejected - loaded,
        amount_total=round(amount_total or 0.0, 2),
        details=details,
    )


def _insert_unordered(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> int:
    """Run an INSERT without preserving insertion order: mandats rows have no order, and
    DuckDB then writes on every core (about 1.5 times faster here). The setting is the
    connection's, so it is put back; it is not transactional, and cannot be put back in
    a transaction aborted by a failed INSERT (the rows of mandats guarantee NOT NULL
    values, so the INSERT is not expected to fail)."""
    previous = con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0]
    con.execute("SET preserve_insertion_order = false")
    try:
        return con.execute(sql, params).fetchall()[0][0]
    finally:
        try:
            con.execute(f"SET preserve_insertion_order = {'true' if previous else 'false'}")
        except duckdb.Error:
            pass


def _drop_temp(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DROP VIEW IF EXISTS _m_rows")
    for name in TEMP_OBJECTS:
        con.execute(f"DROP TABLE IF EXISTS {name}")
    for name in re.findall(r"TEMP MACRO (\w+)", MACROS_SQL):
        con.execute(f"DROP MACRO IF EXISTS {name}")


def _csv_line_numbers(
    con: duckdb.DuckDBPyConnection, src: Source, starts: list[int] | None, nlines: int | None
) -> tuple[str, str, bool]:
    """(line expression, join, exact?) giving each parsed CSV record its physical line.

    _m_parsed keeps the file's order (insertion order is preserved), so its rowid is the
    record's rank. When records and lines match one to one (no blank line, no quoted
    newline) the line is rank + header; otherwise the scanned record starts are joined.
    """
    # Rows created inside a transaction get row ids from a large base, in insertion order.
    nrecords, base, top = con.execute("SELECT count(*), min(rowid), max(rowid) FROM _m_parsed").fetchall()[0]
    base = int(base or 0)
    contiguous = top is None or int(top) - base + 1 == nrecords
    offset = src.header_end_line + 1 - base
    rank_line = f"(p._rid + {int(offset)})"
    if nlines is not None and nlines - src.header_end_line == nrecords:
        return rank_line, "", contiguous
    if starts is None:
        starts, _ = _record_starts(src.csv_path, src.header_end_line)
    if len(starts) != nrecords or not contiguous:
        return rank_line, "", False
    con.register(
        "_m_lines_arrow",
        pa.table(
            {"idx": pa.array(range(nrecords), type=pa.int64()), "line": pa.array(starts, type=pa.int64())}
        ),
    )
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE _m_lines AS SELECT * FROM _m_lines_arrow")
    finally:
        con.unregister("_m_lines_arrow")
    return "ln.line", f"JOIN _m_lines ln ON ln.idx = p._rid - {base}", True


def _basis_label(fields: dict[str, int], n_ttc: int, n_ht: int) -> str:
    if "amount_ttc" in fields:
        return "TTC" if not n_ht else "TTC (HT où le TTC manque)"
    if "amount" in fields:
        return "TTC (montant payé, supposé TTC)" if not n_ht else "TTC (montant payé ; HT où il manque)"
    return "HT"
