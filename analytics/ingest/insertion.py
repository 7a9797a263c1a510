"""Insertion-hours follow-up (clause sociale), as facilitators export it.

One row per contract (and often per beneficiary) and period: contract number (n° de
marché / identifiant), holder SIRET (optional), period (a date, a month or a year),
hours of insertion work realised, beneficiaries (optional). CSV, XLSX or Parquet;
French numbers (``1 234,5``, ``35 h``, ``35:30``) and dates (``25/11/2026``, ``11/2026``,
``novembre 2026``, ``2026-11``, ``2026``, Excel dates). A month or a year is dated on
its last day (as the mandats importer dates an exercice without dates on 31/12).

Rows whose period, hours or contract number cannot be read are rejected with their
reason. Rows already present from an earlier import (same contract, SIRET, period and
hours, counted as many times as they occur) are skipped and counted as duplicates, so an
overlapping re-export does not count hours twice.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from analytics.ingest.common import ImportRefused, LoadCounts, Options, norm_header
from analytics.ingest.sirene import (
    _col,
    id_sql,
    insert_rejects,
    match_headers,
    read_tabular,
    siret_valid_sql,
)

FIELDS: dict[str, tuple[str, ...]] = {
    "contract_id": ("numerodemarche", "nmarche", "nodemarche", "ndemarche", "numeromarche",
                    "marche", "idmarche", "identifiantmarche", "identifiantdumarche",
                    "referencemarche", "referencedumarche", "id", "contrat", "ncontrat",
                    "numerocontrat", "numerodecontrat", "contractid", "contract"),
    "holder_siret": ("siret", "siretentreprise", "siretattributaire", "siretdutitulaire",
                     "siretitulaire", "siretentrepriseattributaire", "holdersiret",
                     "siretdelentreprise"),
    "period": ("periode", "date", "mois", "annee", "period", "month", "year",
               "moisderealisation", "periodederealisation", "datederealisation",
               "datedereleve", "moisannee", "anneemois"),
    "hours": ("heuresdinsertionrealisees", "heuresrealisees", "heuresdinsertion",
              "nombredheures", "nombredheuresrealisees", "nbheures", "nbheuresrealisees",
              "heuresinsertion", "heures", "hours", "volumehoraire", "volumehorairerealise",
              "heurestravaillees"),
    "beneficiaries": ("beneficiaires", "nombredebeneficiaires", "nbbeneficiaires",
                      "nombrebeneficiaires", "nbdebeneficiaires", "beneficiaries",
                      "participants", "nombredeparticipants"),
}

_MONTHS = {
    "janvier": 1, "janv": 1, "jan": 1, "fevrier": 2, "fevr": 2, "fev": 2, "mars": 3,
    "avril": 4, "avr": 4, "mai": 5, "juin": 6, "juillet": 7, "juil": 7, "aout": 8,
    "septembre": 9, "sept": 9, "sep": 9, "octobre": 10, "oct": 10, "novembre": 11, "nov": 11,
    "decembre": 12, "dec": 12,
}


def _fuzzy(headers: list[str], found: dict[str, str]) -> None:
    """Headers that contain a keyword ('Heures d'insertion réalisées (h)', 'N° du
    marché public'), when no exact synonym matched."""
    used = set(found.values())
    rules = {
        "hours": (("heure",), ("realis", "insertion")),
        "beneficiaries": (("benef",), ()),
        "holder_siret": (("siret",), ()),
        "contract_id": (("marche", "contrat", "operation"), ("marche", "contrat", "num", "ref", "id")),
        "period": (("periode", "mois", "date"), ("realis",)),
    }
    for field_name, (need, prefer) in rules.items():
        if field_name in found:
            continue
        cands = [h for h in headers if h not in used and any(k in norm_header(h) for k in need)]
        if field_name == "contract_id":
            cands = [h for h in cands if "date" not in norm_header(h) and "montant" not in norm_header(h)]
        if cands:
            cands.sort(key=lambda h: -sum(p in norm_header(h) for p in prefer))
            found[field_name] = cands[0]
            used.add(cands[0])


def _period_sql(x: str) -> str:
    """A period text -> its DATE (last day of a month or year), else NULL."""
    t = f"lower(strip_accents(trim({x})))"
    month_case = " ".join(f"WHEN '{k}' THEN {v}" for k, v in _MONTHS.items())
    named = (f"CASE regexp_extract({t}, '^([a-z]+)\\.?\\s+[0-9]{{4}}$', 1) {month_case} END")
    named_year = f"try_cast(regexp_extract({t}, '([0-9]{{4}})$', 1) AS INTEGER)"

    def month_end(y: str, m: str) -> str:
        return f"last_day(make_date({y}, {m}, 1))"

    return f"""CASE
        WHEN regexp_full_match({t}, '[0-9]{{1,2}}/[0-9]{{1,2}}/[0-9]{{4}}') THEN try_strptime({t}, '%d/%m/%Y')::DATE
        WHEN regexp_full_match({t}, '[0-9]{{1,2}}/[0-9]{{1,2}}/[0-9]{{2}}') THEN try_strptime({t}, '%d/%m/%y')::DATE
        WHEN regexp_full_match({t}, '[0-9]{{1,2}}-[0-9]{{1,2}}-[0-9]{{4}}') THEN try_strptime({t}, '%d-%m-%Y')::DATE
        WHEN regexp_full_match({t}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}([ t].*)?') THEN try_cast(left({t}, 10) AS DATE)
        WHEN regexp_full_match({t}, '[0-9]{{4}}-[0-9]{{1,2}}')
            AND try_cast(split_part({t}, '-', 2) AS INTEGER) BETWEEN 1 AND 12
            THEN {month_end(f"try_cast(split_part({t}, '-', 1) AS INTEGER)", f"try_cast(split_part({t}, '-', 2) AS INTEGER)")}
        WHEN regexp_full_match({t}, '[0-9]{{1,2}}[/.-][0-9]{{4}}')
            AND try_cast(regexp_extract({t}, '^([0-9]+)', 1) AS INTEGER) BETWEEN 1 AND 12
            THEN {month_end(f"try_cast(regexp_extract({t}, '([0-9]{{4}})$', 1) AS INTEGER)", f"try_cast(regexp_extract({t}, '^([0-9]+)', 1) AS INTEGER)")}
        WHEN regexp_full_match({t}, '[0-9]{{4}}') AND try_cast({t} AS INTEGER) BETWEEN 1990 AND 2100
            THEN make_date(try_cast({t} AS INTEGER), 12, 31)
        WHEN regexp_full_match({t}, '[0-9]{{5}}(\\.0+)?')
            THEN (DATE '1899-12-30' + try_cast(try_cast({t} AS DOUBLE) AS INTEGER))
        WHEN {named} IS NOT NULL AND {named_year} IS NOT NULL
            THEN {month_end(named_year, named)}
    END"""


def _hours_sql(x: str) -> str:
    """'1 234,5' / '1.234,5' / '35 h' / '35h30' / '35:30' / '1234.5' -> DOUBLE, else NULL."""
    t = (f"lower(regexp_replace(trim({x}), '[\\s\u00a0\u202f]', '', 'g'))")
    hm = f"regexp_extract({t}, '^([0-9]+)[h:]([0-5][0-9])$', ['h', 'm'])"
    num = (f"CASE WHEN regexp_full_match({t}, '-?[0-9]{{1,3}}(\\.[0-9]{{3}})+(,[0-9]+)?') "
           f"THEN replace(replace({t}, '.', ''), ',', '.') "
           f"ELSE replace(regexp_replace({t}, '(heures?|hrs?|h)$', ''), ',', '.') END")
    return (f"CASE WHEN regexp_full_match({t}, '[0-9]+[h:][0-5][0-9]') "
            f"THEN try_cast({hm}.h AS DOUBLE) + try_cast({hm}.m AS DOUBLE) / 60 "
            f"ELSE try_cast({num} AS DOUBLE) END")


def load(con: duckdb.DuckDBPyConnection, import_id: int, path: Path, options: Options) -> LoadCounts:
    """Import an insertion-hours follow-up file. See the module docstring."""
    progress = options.progress or (lambda m, f: None)
    progress("Lecture du suivi des heures", 0.0)
    tab = read_tabular(con, Path(path), "_ins_raw")
    try:
        found = match_headers(tab.headers, FIELDS, options.mapping)
        _fuzzy(tab.headers, found)
        missing = [label for f, label in (("contract_id", "n° de marché"), ("period", "période / date"),
                                          ("hours", "heures d'insertion réalisées"))
                   if f not in found]
        if missing:
            seen = ", ".join(tab.headers[:15]) + ("…" if len(tab.headers) > 15 else "")
            raise ImportRefused(
                f"Colonne(s) introuvable(s) : {', '.join(missing)} (colonnes vues : {seen})."
            )
        if tab.rows == 0:
            raise ImportRefused("Le fichier de suivi ne contient aucune ligne.")
        progress("Contrôle des lignes", 0.3)
        counts = _load(con, import_id, found, tab)
        progress("Suivi des heures chargé", 1.0)
        return counts
    finally:
        for t in ("_ins_raw", "_ins_ok"):
            con.execute(f"DROP TABLE IF EXISTS {t}")


def _load(con, import_id: int, found: dict, tab) -> LoadCounts:
    n_rows = tab.rows
    cols = tab.cols(found)  # field -> generated column c<i>: no header text in the SQL
    c = lambda f: _col(cols, f)  # noqa: E731
    siret = id_sql(cols, "holder_siret", 14, tab.numeric_fields(found))
    benef = f"try_cast(replace(regexp_replace({c('beneficiaries')}, '[\\s\u00a0\u202f]', '', 'g'), ',', '.') AS DOUBLE)"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _ins_ok AS
        SELECT r._line,
               {c('contract_id')} AS contract_id,
               {c('holder_siret')} AS siret_raw,
               CASE WHEN {siret_valid_sql('(' + siret + ')')} THEN {siret} END AS holder_siret,
               {c('period')} AS period_raw,
               {_period_sql(c('period'))} AS period_date,
               {c('hours')} AS hours_raw,
               {_hours_sql(c('hours'))} AS hours,
               {c('beneficiaries')} AS benef_raw,
               CASE WHEN {benef} >= 0 AND {benef} = trunc({benef}) THEN {benef}::INTEGER END
                   AS beneficiaries
        FROM _ins_raw r"""
    )
    con.execute(
        """ALTER TABLE _ins_ok ADD COLUMN reason VARCHAR;
        UPDATE _ins_ok SET reason = CASE
            WHEN hours_raw IS NULL AND period_raw IS NULL AND contract_id IS NULL THEN 'Ligne vide'
            WHEN contract_id IS NULL THEN 'N° de marché manquant'
            WHEN period_raw IS NULL THEN 'Période manquante'
            WHEN period_date IS NULL THEN 'Période illisible (attendu JJ/MM/AAAA, MM/AAAA ou AAAA)'
            WHEN hours_raw IS NULL THEN 'Nombre d''heures manquant'
            WHEN hours IS NULL THEN 'Nombre d''heures illisible'
            WHEN hours < 0 THEN 'Nombre d''heures négatif'
            WHEN isinf(hours) OR isnan(hours) THEN 'Nombre d''heures illisible'
        END"""
    )
    # the header of the column at fault: the headers go as parameters
    blank = "Ligne vide"
    # blank lines (all three fields empty, e.g. a total line) are skipped without reject
    rejected = insert_rejects(
        con, import_id,
        """SELECT _line AS line_number,
                   CASE reason WHEN 'N° de marché manquant' THEN $contract_col::VARCHAR
                        WHEN 'Période manquante' THEN $period_col::VARCHAR
                        WHEN 'Période illisible (attendu JJ/MM/AAAA, MM/AAAA ou AAAA)'
                            THEN $period_col::VARCHAR
                        ELSE $hours_col::VARCHAR END AS column_name,
                   CASE WHEN reason LIKE 'N°%' THEN contract_id
                        WHEN reason LIKE 'Période%' THEN period_raw ELSE hours_raw END AS raw_value,
                   reason
            FROM _ins_ok WHERE reason IS NOT NULL AND reason <> $blank""",
        {"contract_col": found["contract_id"], "period_col": found["period"],
         "hours_col": found["hours"], "blank": blank},
    )
    blanks = con.execute(
        "SELECT count(*) FROM _ins_ok WHERE reason = $b", {"b": blank}
    ).fetchone()[0]
    # rows already imported (same contract, SIRET, period, hours: as many times as present)
    con.execute(
        """INSERT INTO insertion_hours (import_id, line_number, contract_id, holder_siret,
            period_date, hours, beneficiaries)
        SELECT $i, n._line, n.contract_id, n.holder_siret, n.period_date, n.hours, n.beneficiaries
        FROM (
            SELECT *, row_number() OVER (
                PARTITION BY contract_id, coalesce(holder_siret, ''), period_date, hours
                ORDER BY _line) AS occ
            FROM _ins_ok WHERE reason IS NULL
        ) n
        LEFT JOIN (
            SELECT h.contract_id, coalesce(h.holder_siret, '') AS s, h.period_date, h.hours,
                   count(*) AS present
            FROM insertion_hours h JOIN imports i ON i.import_id = h.import_id AND i.status = 'ok'
            GROUP BY ALL
        ) p ON p.contract_id = n.contract_id AND p.s = coalesce(n.holder_siret, '')
           AND p.period_date = n.period_date AND p.hours = n.hours
        WHERE n.occ > coalesce(p.present, 0)
        ORDER BY n._line""",
        {"i": import_id},
    )
    loaded, hours = con.execute(
        "SELECT count(*), coalesce(sum(hours), 0) FROM insertion_hours WHERE import_id = $i",
        {"i": import_id},
    ).fetchone()
    valid, bad_siret = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE siret_raw IS NOT NULL AND holder_siret IS NULL) "
        "FROM _ins_ok WHERE reason IS NULL"
    ).fetchone()
    return LoadCounts(
        rows_read=n_rows - blanks,
        rows_loaded=loaded,
        rows_rejected=rejected,
        rows_duplicate=valid - loaded,
        details={
            "hours_total": round(float(hours), 2),
            "fte": round(float(hours) / 1607, 2),
            "invalid_sirets_kept_without_siret": bad_siret,
            "blank_lines": blanks,
            "columns": {k: v for k, v in found.items()},
        },
    )
