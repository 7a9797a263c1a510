"""Supplier referential: INSEE SIRENE StockEtablissement / StockUniteLegale extracts.

Any subset of the official columns that contains ``siret`` (establishments, with the
legal-unit columns too when the extract carries them) or only ``siren`` (legal units),
as CSV (any delimiter, UTF-8 / cp1252 / UTF-16, or zipped) or Parquet, up to millions
of rows: the file is read by DuckDB (``read_csv`` / ``read_parquet``, every column as
text, renamed ``c0``, ``c1``… by position as it is read: the file's header text never
appears in SQL, headers are matched to fields in Python and reported as $parameters) and
loaded with set-based SQL, never a Python loop per row. Identifiers are
checked in SQL (Luhn, with La Poste's exception for SIRET; the expressions are tested
against python-stdnum); invalid rows are rejected with their reason.

This module also holds the tabular reader shared by the list and insertion importers
(``read_tabular``) and the SQL identifier checks (``siret_valid_sql``, ``siren_valid_sql``).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from analytics.ids import (  # noqa: F401  (re-exported for the other importers)
    digits_sql,
    siren_valid_sql,
    siret_valid_num_sql,
    siret_valid_sql,
)
from analytics.ingest.common import (
    MAX_REJECTS_STORED,
    ImportRefused,
    LoadCounts,
    Options,
    check_xlsx,
    detect_file_encoding,
    norm_header,
    sniff_kind,
    transcode_to_utf8,
)

# --- reading any tabular file into a temp table ---------------------------------------


@dataclass
class Tabular:
    """A file read into the temp table ``table``: its headers, and the line-number column.

    The table's columns are generated names (``c0``, ``c1``… by position in the file, plus
    ``_line``): the file's header text never appears in SQL. ``names`` maps each loaded
    header to its column; ``cols()`` turns a field -> header match into field -> column.
    """

    table: str
    headers: list[str]
    rows: int
    fmt: str  # csv | parquet | xlsx
    numeric: frozenset[str] = frozenset()  # Parquet / Excel columns holding numbers (zeros lost)
    names: dict[str, str] = field(default_factory=dict)  # loaded header -> generated column

    def cols(self, found: dict[str, str]) -> dict[str, str]:
        """field -> generated column name, for a field -> header match."""
        return {f: self.names[h] for f, h in found.items() if h in self.names}

    def numeric_fields(self, found: dict[str, str]) -> set[str]:
        """The fields whose column holds numbers (an identifier there lost its zeros)."""
        return {f for f, h in found.items() if h in self.numeric}


_GENERATED = re.compile(r"c[0-9]+")


def _gen(i: int) -> str:
    """The generated name of the file's column at position ``i`` (0-based)."""
    return f"c{int(i)}"


def _checked(name: str) -> str:
    """A generated column name, checked: only ``c<digits>`` ever goes into SQL text."""
    if not _GENERATED.fullmatch(name):
        raise ValueError(f"nom de colonne non généré : {name!r}")
    return name


def _positions(headers: list[str], keep: list[str]) -> list[int]:
    """Positions of the kept headers (the first one of a repeated header)."""
    first: dict[str, int] = {}
    for i, h in enumerate(headers):
        first.setdefault(h, i)
    return sorted({first[h] for h in keep if h in first})


def _detect_delimiter(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(64 * 1024).decode("utf-8", errors="replace")
    first = next((ln for ln in head.splitlines() if ln.strip()), "")
    counts = {d: first.count(d) for d in (";", ",", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    if counts[best] == 0:
        return ","
    return best


def _unzip_single(path: Path, workdir: Path) -> Path:
    try:
        with zipfile.ZipFile(path) as z:
            members = [i for i in z.infolist() if not i.is_dir()
                       and i.filename.lower().endswith((".csv", ".txt", ".parquet"))]
            if len(members) != 1:
                raise ImportRefused(
                    "L'archive ZIP doit contenir exactement un fichier CSV ou Parquet."
                )
            target = workdir / Path(members[0].filename).name
            with z.open(members[0]) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
            return target
    except zipfile.BadZipFile:
        raise ImportRefused("L'archive ZIP est illisible ou tronquée.") from None


def read_tabular(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    table: str,
    *,
    columns=None,
    allow_xlsx: bool = True,
) -> Tabular:
    """Read a CSV / Parquet / XLSX (or a ZIP holding one CSV/Parquet) into a TEMP table of
    text columns plus ``_line`` (the file's line number, header = line 1).

    ``columns``: optional callable headers -> list of headers to keep (the others are
    not loaded: a 48-column SIRENE stock keeps only what is used).
    """
    with open(path, "rb") as f:
        head = f.read(8192)
    kind = sniff_kind(head)
    workdir = Path(tempfile.mkdtemp(prefix="empreinte_"))
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as z:
                is_xlsx = "xl/workbook.xml" in z.namelist()
            if is_xlsx:
                if not allow_xlsx:
                    raise ImportRefused("Ce type d'import n'accepte pas les classeurs Excel.")
                return _read_xlsx(con, path, table, columns)
            path = _unzip_single(path, workdir)
            with open(path, "rb") as f:
                kind = sniff_kind(f.read(8192))
        if kind == "parquet":
            src = "read_parquet($p)"
            params = {"p": str(path)}
            fmt = "parquet"
        elif kind == "text":
            enc = detect_file_encoding(path)
            path = transcode_to_utf8(path, enc, workdir) if enc != "utf-8" else path
            # path and delimiter are parameters; every option is ours
            src = (
                "read_csv($p, delim=$d, header=true, all_varchar=true, quote='\"', escape='\"',"
                " null_padding=true, strict_mode=false, sample_size=20480"
            )
            params = {"p": str(path), "d": _detect_delimiter(path)}
            fmt = "csv"
        elif kind in ("html", "xml"):
            raise ImportRefused("Le fichier est une page HTML/XML, pas un tableau CSV, Excel ou Parquet.")
        elif kind == "json":
            raise ImportRefused("Le fichier est du JSON : un tableau CSV, Excel ou Parquet est attendu.")
        elif kind == "xls":
            raise ImportRefused("Ancien format Excel (.xls) : enregistrez-le en .xlsx ou CSV.")
        else:
            raise ImportRefused("Le fichier n'est pas un fichier texte, Excel ou Parquet lisible.")
        try:
            described = con.execute(
                f"DESCRIBE SELECT * FROM {src}{')' if fmt == 'csv' else ''}", params
            ).fetchall()
        except duckdb.Error as exc:
            raise ImportRefused(f"Fichier illisible : {_short(exc)}") from None
        headers = [r[0] for r in described]
        types = [r[1] for r in described]
        keep = columns(headers) if columns else headers
        positions = _positions(headers, keep)
        if fmt == "csv":
            # the file's columns renamed c0…cN as they are read
            params["n"] = [_gen(i) for i in range(len(headers))]
            src = f"{src}, names=$n)"
        else:
            # Parquet: positional references (#1…) renamed c<i>; only the kept ones are read
            inner = ", ".join(f"#{i + 1} AS {_gen(i)}" for i in positions)
            src = f"(SELECT {inner or '1 AS _none'} FROM {src})"
        cols = ["row_number() OVER () + 1 AS _line"]  # order-preserving: file line number
        numeric = set()
        for i in positions:
            c = _gen(i)
            if fmt == "parquet" and types[i] != "VARCHAR":
                numeric.add(headers[i])
                if types[i] in ("DOUBLE", "FLOAT") or types[i].startswith("DECIMAL"):
                    # integral values written as floats by pandas: 5710.0 -> 5710
                    expr = (f"CASE WHEN {c} = trunc({c}) THEN CAST(CAST({c} AS HUGEINT) AS VARCHAR) "
                            f"ELSE CAST({c} AS VARCHAR) END")
                else:
                    expr = f"CAST({c} AS VARCHAR)"
                cols.append(f"{expr} AS {c}")
            else:
                cols.append(c)
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT {', '.join(cols)} FROM {src}", params
            )
        except duckdb.Error as exc:
            raise ImportRefused(f"Fichier illisible : {_short(exc)}") from None
        n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        names = {headers[i]: _gen(i) for i in positions}
        return Tabular(table, headers, n, fmt, frozenset(numeric), names)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _read_xlsx(con, path: Path, table: str, columns) -> Tabular:
    import openpyxl
    import pandas as pd

    check_xlsx(path)
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds
        raise ImportRefused(f"Le classeur Excel est illisible : {exc}") from None
    try:
        ws = wb.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        header = None
        skipped = 0
        for r in rows:
            skipped += 1
            if r and sum(1 for v in r if v not in (None, "")) >= 2:
                header = [str(v).strip() if v is not None else "" for v in r]
                break
        if header is None:
            raise ImportRefused("Le classeur Excel ne contient aucune ligne d'en-tête.")
        seen: dict[str, int] = {}
        names = []
        for i, h in enumerate(header):
            h = h or f"colonne{i + 1}"
            if h in seen:
                seen[h] += 1
                h = f"{h}_{seen[h]}"
            else:
                seen[h] = 0
            names.append(h)
        data = []
        numeric_cols: set[int] = set()
        for r in rows:
            vals = list(r[: len(names)]) + [None] * (len(names) - len(r))
            numeric_cols.update(i for i, v in enumerate(vals)
                                if isinstance(v, (int, float)) and not isinstance(v, bool))
            data.append([_xlsx_text(v) for v in vals])
    finally:
        wb.close()
    keep = columns(names) if columns else names
    positions = _positions(names, keep)
    # the sheet's columns by position, renamed c<i>: the header text stays out of the SQL
    df = pd.DataFrame([[row[i] for i in positions] for row in data],
                      columns=[_gen(i) for i in positions], dtype=object)
    df["_line"] = range(skipped + 1, skipped + 1 + len(data))
    con.register("_xlsx_df", df)
    try:
        cols = ", ".join(f"CAST({_gen(i)} AS VARCHAR) AS {_gen(i)}" for i in positions)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT {cols + ', ' if cols else ''}"
            "_line::BIGINT AS _line FROM _xlsx_df"
        )
    finally:
        con.unregister("_xlsx_df")
    numeric = frozenset(names[i] for i in numeric_cols if i in positions)
    return Tabular(table, names, len(data), "xlsx", numeric, {names[i]: _gen(i) for i in positions})


def _xlsx_text(v):
    import datetime as dt

    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, dt.datetime):
        return v.date().isoformat() if v.time() == dt.time(0) else v.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    return str(v)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def match_headers(
    headers: list[str], synonyms: dict[str, tuple[str, ...]], mapping: dict[str, str] | None
) -> dict[str, str]:
    """field -> header, from a mapping (header -> field) first, then synonyms (normalised)."""
    found: dict[str, str] = {}
    if mapping:
        by_norm = {norm_header(h): h for h in headers}
        for src, field_name in mapping.items():
            h = src if src in headers else by_norm.get(norm_header(src))
            target = _field_of(field_name, synonyms)
            if h and target:
                found[target] = h
    normed = [(norm_header(h), h) for h in headers]
    for field_name, syns in synonyms.items():
        if field_name in found:
            continue
        for syn in syns:
            hit = next((h for n, h in normed if n == syn and h not in found.values()), None)
            if hit:
                found[field_name] = hit
                break
    return found


def _field_of(name: str, synonyms: dict[str, tuple[str, ...]]) -> str | None:
    if name in synonyms:
        return name
    n = norm_header(name)
    for field_name, syns in synonyms.items():
        if n == norm_header(field_name) or n in syns:
            return field_name
    return None


def insert_rejects(con, import_id: int, select_sql: str, params: dict | None = None) -> int:
    """INSERT INTO rejected_rows from a query of (line_number, column_name, raw_value,
    reason); capped like common.record_rejects. Returns the number of rejected rows."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _rejects AS " + select_sql, params or {}
    )
    n = con.execute("SELECT count(*) FROM _rejects").fetchone()[0]
    if n:
        con.execute(
            "INSERT INTO rejected_rows SELECT $i, line_number, column_name, raw_value, reason "
            f"FROM _rejects ORDER BY line_number LIMIT {MAX_REJECTS_STORED}",
            {"i": import_id},
        )
    con.execute("DROP TABLE _rejects")
    return n


# --- SIRENE ----------------------------------------------------------------------------

ETAB_FIELDS: dict[str, tuple[str, ...]] = {
    "siret": ("siret",),
    "siren": ("siren",),
    "nic": ("nic",),
    "siege": ("etablissementsiege",),
    "commune_code": ("codecommuneetablissement",),
    "postcode": ("codepostaletablissement",),
    "commune_name": ("libellecommuneetablissement",),
    "naf": ("activiteprincipaleetablissement",),
    "tranche_effectifs": ("trancheeffectifsetablissement",),
    "etat": ("etatadministratifetablissement",),
    "enseigne": ("enseigne1etablissement",),
    "denomination_usuelle": ("denominationusuelleetablissement",),
    "date_creation": ("datecreationetablissement",),
}
UNIT_FIELDS: dict[str, tuple[str, ...]] = {
    "denomination": ("denominationunitelegale",),
    "nom": ("nomunitelegale",),
    "nom_usage": ("nomusageunitelegale",),
    "prenom_usuel": ("prenomusuelunitelegale",),
    "prenom1": ("prenom1unitelegale",),
    "categorie_juridique": ("categoriejuridiqueunitelegale",),
    "categorie_entreprise": ("categorieentreprise",),
    "tranche_effectifs_ul": ("trancheeffectifsunitelegale",),
    "naf_ul": ("activiteprincipaleunitelegale",),
    "naf25_ul": ("activiteprincipalenaf25unitelegale",),
    "ess": ("economiesocialesolidaireunitelegale",),
    "societe_mission": ("societemissionunitelegale",),
    "etat_ul": ("etatadministratifunitelegale",),
    "nic_siege": ("nicsiegeunitelegale",),
}
# columns that make a file carry legal-unit facts (a bare siren does not)
_UNIT_FACTS = ("denomination", "nom", "categorie_juridique", "categorie_entreprise",
               "tranche_effectifs_ul", "naf_ul", "naf25_ul", "ess", "societe_mission",
               "etat_ul", "nic_siege")


def _col(cols: dict[str, str], field_name: str, alias: str = "r") -> str:
    """The source column of a field (``cols``: field -> generated name c<i>, see
    ``Tabular.cols``), trimmed, or NULL."""
    c = cols.get(field_name)
    prefix = f"{alias}." if alias else ""
    return f"nullif(trim({prefix}{_checked(c)}), '')" if c else "NULL::VARCHAR"


def _flag_on(x: str) -> str:
    return f"(lower({x}) IN ('true', 't', '1', 'o', 'oui', 'y', 'yes', 'vrai'))"


def _on(x: str) -> str:
    """O/N flags (also true/false, oui/non, 1/0)."""
    return (f"CASE WHEN upper({x}) IN ('O', 'OUI', 'TRUE', 'T', '1', 'Y', 'YES', 'VRAI') THEN 'O' "
            f"WHEN upper({x}) IN ('N', 'NON', 'FALSE', 'F', '0', 'NO', 'FAUX') THEN 'N' END")


def _band(x: str) -> str:
    """Headcount band: '1' -> '01' (numeric columns lose the zero), NN kept."""
    return f"CASE WHEN regexp_full_match({x}, '[0-9]') THEN '0' || {x} ELSE upper({x}) END"


def _cj(x: str) -> str:
    return f"CASE WHEN regexp_full_match({x}, '[0-9]{{4}}([.]0+)?') THEN left({x}, 4) END"


def _date(x: str) -> str:
    return (f"coalesce(try_cast(left({x}, 10) AS DATE), "
            f"try_strptime({x}, '%d/%m/%Y')::DATE)")


def _commune(x: str) -> str:
    return (f"CASE WHEN regexp_full_match({x}, '[0-9]{{4}}') THEN '0' || {x} "
            f"ELSE upper({x}) END")


def _unit_select(cols: dict[str, str], siren_expr: str, nic_expr: str | None = None) -> str:
    """Columns of sirene_unites (after import_id) from the raw row r."""
    c = lambda f: _col(cols, f)  # noqa: E731
    person = (f"nullif(trim(concat_ws(' ', coalesce({c('prenom_usuel')}, {c('prenom1')}), "
              f"coalesce({c('nom_usage')}, {c('nom')}))), '')")
    return ", ".join([
        f"{siren_expr} AS siren",
        f"coalesce({c('denomination')}, {person}) AS denomination",
        f"{_cj(c('categorie_juridique'))} AS categorie_juridique",
        f"upper({c('categorie_entreprise')}) AS categorie_entreprise",
        f"{_band(c('tranche_effectifs_ul'))} AS tranche_effectifs",
        f"upper(coalesce({c('naf_ul')}, {c('naf25_ul')})) AS naf",
        f"{_on(c('ess'))} AS ess",
        f"{_on(c('societe_mission'))} AS societe_mission",
        f"upper({c('etat_ul')}) AS etat",
        f"{nic_expr or _nic(c('nic_siege'))} AS nic_siege",
    ])


def _nic(x: str) -> str:
    return f"CASE WHEN regexp_full_match({x}, '[0-9]{{1,5}}') THEN lpad({x}, 5, '0') END"


def load(con: duckdb.DuckDBPyConnection, import_id: int, path: Path, options: Options) -> LoadCounts:
    """Import a SIRENE extract (establishments or legal units); see the module docstring."""
    progress = options.progress or (lambda m, f: None)
    all_fields = {**ETAB_FIELDS, **UNIT_FIELDS}

    def keep(headers: list[str]) -> list[str]:
        return list(dict.fromkeys(match_headers(headers, all_fields, options.mapping).values()))

    progress("Lecture de l'extrait SIRENE", 0.0)
    tab = read_tabular(con, Path(path), "_sirene_raw", columns=keep, allow_xlsx=True)
    found = match_headers(tab.headers, all_fields, options.mapping)
    if "siret" not in found and "siren" not in found:
        seen = ", ".join(tab.headers[:15]) + ("…" if len(tab.headers) > 15 else "")
        con.execute("DROP TABLE IF EXISTS _sirene_raw")
        raise ImportRefused(
            "Ce n'est pas un extrait SIRENE : aucune colonne « siret » ni « siren » "
            f"(colonnes vues : {seen})."
        )
    if tab.rows == 0:
        con.execute("DROP TABLE IF EXISTS _sirene_raw")
        raise ImportRefused("L'extrait SIRENE ne contient aucune ligne.")
    progress("Contrôle des identifiants", 0.3)
    has_unit = any(f in found for f in _UNIT_FACTS)
    numeric = tab.numeric_fields(found)
    cols = tab.cols(found)
    try:
        if "siret" in found:
            counts = _load_etablissements(con, import_id, cols, has_unit, tab.rows, numeric,
                                          found["siret"])
        else:
            counts = _load_unites(con, import_id, cols, tab.rows, numeric, found["siren"])
    finally:
        con.execute("DROP TABLE IF EXISTS _sirene_raw")
        con.execute("DROP TABLE IF EXISTS _sirene_ok")
    counts.details["format"] = tab.fmt
    counts.details["columns"] = sorted(found)
    progress("Extrait SIRENE chargé", 1.0)
    return counts


def id_sql(cols: dict, field_name: str, width: int, numeric) -> str:
    """An identifier column as text digits: a numeric Parquet / Excel column (its field
    in ``numeric``, see ``Tabular.numeric_fields``) gets its leading zeros back."""
    col = _col(cols, field_name)
    if field_name in numeric:
        return (f"CASE WHEN regexp_full_match({col}, '[0-9]{{1,{width}}}') "
                f"THEN lpad({col}, {width}, '0') ELSE {digits_sql(col, width)} END")
    return digits_sql(col, width)


def _load_etablissements(con, import_id: int, cols: dict, has_unit: bool, n_rows: int,
                         numeric: set, siret_header: str) -> LoadCounts:
    c = lambda f: _col(cols, f)  # noqa: E731
    siret = id_sql(cols, "siret", 14, numeric)
    siren_in = id_sql(cols, "siren", 9, numeric)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _sirene_ok AS
        SELECT * EXCLUDE (_n), {siret_valid_num_sql('_siret', '_n')} AS ok FROM (
            SELECT r._line, {siret} AS _siret,
                   TRY_CAST(CASE WHEN regexp_full_match({siret}, '[0-9]{{14}}') THEN {siret} END
                            AS BIGINT) AS _n,
                   r.* EXCLUDE (_line)
            FROM _sirene_raw r)"""
    )
    rejected = insert_rejects(
        con, import_id,
        f"""SELECT _line AS line_number, $col::VARCHAR AS column_name,
                   {_col(cols, 'siret', '')} AS raw_value,
                   CASE WHEN _siret IS NULL OR _siret = '' THEN 'SIRET manquant'
                        WHEN NOT regexp_full_match(_siret, '[0-9]{{14}}')
                            THEN 'SIRET invalide : 14 chiffres attendus'
                        ELSE 'SIRET invalide : clé de contrôle (Luhn) erronée' END AS reason
            FROM _sirene_ok WHERE NOT coalesce(ok, false)""",
        {"col": siret_header},
    )
    # one row per SIRET (the first in the file); the others are counted as duplicates
    etab_cols = ", ".join([
        "_siret",
        f"coalesce(CASE WHEN {siren_valid_sql(siren_in)} AND {siren_in} = left(_siret, 9) "
        f"THEN {siren_in} END, left(_siret, 9)) AS siren",
        f"CASE WHEN {c('siege')} IS NULL THEN NULL ELSE {_flag_on(c('siege'))} END AS siege",
        f"{_commune(c('commune_code'))} AS commune_code",
        f"CASE WHEN regexp_full_match({c('postcode')}, '[0-9]{{4}}') THEN '0' || {c('postcode')} "
        f"ELSE {c('postcode')} END AS postcode",
        f"{c('commune_name')} AS commune_name",
        f"upper({c('naf')}) AS naf",
        f"{_band(c('tranche_effectifs'))} AS tranche_effectifs",
        f"upper({c('etat')}) AS etat",
        f"{c('enseigne')} AS enseigne",
        f"{c('denomination_usuelle')} AS denomination_usuelle",
        f"{_date(c('date_creation'))} AS date_creation",
    ])
    con.execute(
        f"""INSERT INTO sirene_etablissements
        (import_id, siret, siren, siege, commune_code, postcode, commune_name, naf,
         tranche_effectifs, etat, enseigne, denomination_usuelle, date_creation)
        SELECT $i, {etab_cols}
        FROM _sirene_ok r WHERE ok
        QUALIFY row_number() OVER (PARTITION BY _siret ORDER BY _line) = 1""",
        {"i": import_id},
    )
    loaded = con.execute(
        "SELECT count(*) FROM sirene_etablissements WHERE import_id = $i", {"i": import_id}
    ).fetchone()[0]
    valid = con.execute("SELECT count(*) FROM _sirene_ok WHERE ok").fetchone()[0]
    units = 0
    if has_unit:
        # the unit's head office: nicSiegeUniteLegale, else the establishment flagged siège
        siege_nic = (f"coalesce({_nic(c('nic_siege'))}, "
                     f"max(CASE WHEN {_flag_on(c('siege'))} THEN right(_siret, 5) END) "
                     "OVER (PARTITION BY left(_siret, 9)))")
        unit_cols = _unit_select(cols, "left(_siret, 9)", siege_nic)
        con.execute(
            f"""INSERT INTO sirene_unites
            (import_id, siren, denomination, categorie_juridique, categorie_entreprise,
             tranche_effectifs, naf, ess, societe_mission, etat, nic_siege)
            SELECT $i, * EXCLUDE (_line) FROM (
                SELECT r._line, {unit_cols} FROM _sirene_ok r WHERE ok
            ) QUALIFY row_number() OVER (PARTITION BY siren ORDER BY _line) = 1""",
            {"i": import_id},
        )
        units = con.execute(
            "SELECT count(*) FROM sirene_unites WHERE import_id = $i", {"i": import_id}
        ).fetchone()[0]
    return LoadCounts(
        rows_read=n_rows,
        rows_loaded=loaded,
        rows_rejected=rejected,
        rows_duplicate=valid - loaded,
        details={"extract": "StockEtablissement", "etablissements": loaded, "unites": units},
    )


def _load_unites(con, import_id: int, cols: dict, n_rows: int, numeric: set,
                 siren_header: str) -> LoadCounts:
    siren = id_sql(cols, "siren", 9, numeric)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _sirene_ok AS
        SELECT r._line, {siren} AS siren_clean, r.* EXCLUDE (_line),
               {siren_valid_sql('(' + siren + ')')} AS ok
        FROM _sirene_raw r"""
    )
    rejected = insert_rejects(
        con, import_id,
        f"""SELECT _line AS line_number, $col::VARCHAR AS column_name,
                   {_col(cols, 'siren', '')} AS raw_value,
                   CASE WHEN siren_clean IS NULL OR siren_clean = '' THEN 'SIREN manquant'
                        WHEN NOT regexp_full_match(siren_clean, '[0-9]{{9}}')
                            THEN 'SIREN invalide : 9 chiffres attendus'
                        ELSE 'SIREN invalide : clé de contrôle (Luhn) erronée' END AS reason
            FROM _sirene_ok WHERE NOT coalesce(ok, false)""",
        {"col": siren_header},
    )
    con.execute(
        f"""INSERT INTO sirene_unites
        (import_id, siren, denomination, categorie_juridique, categorie_entreprise,
         tranche_effectifs, naf, ess, societe_mission, etat, nic_siege)
        SELECT $i, * EXCLUDE (_line) FROM (
            SELECT r._line, {_unit_select(cols, 'siren_clean')} FROM _sirene_ok r WHERE ok
        ) QUALIFY row_number() OVER (PARTITION BY siren ORDER BY _line) = 1""",
        {"i": import_id},
    )
    loaded = con.execute(
        "SELECT count(*) FROM sirene_unites WHERE import_id = $i", {"i": import_id}
    ).fetchone()[0]
    valid = con.execute("SELECT count(*) FROM _sirene_ok WHERE ok").fetchone()[0]
    return LoadCounts(
        rows_read=n_rows,
        rows_loaded=loaded,
        rows_rejected=rejected,
        rows_duplicate=valid - loaded,
        details={"extract": "StockUniteLegale", "etablissements": 0, "unites": loaded},
    )

