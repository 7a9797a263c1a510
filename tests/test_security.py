"""Security rules of the product, as tests.

(a) no SQL text is built from a value a user can supply: a scan of every f-string /
    ``%`` / ``.format`` / ``+`` that builds SQL in analytics/ and pages/, each site reviewed
    and allow-listed below with the reason it is safe;
(b) quotes, semicolons and comment markers in supplier names, headers, file names,
    territory codes, buyer names, snapshot comments and target indicators are data;
(c) ``Territory.parse`` rejects injection text;
(d) XLSX (and CSV) exports and the report's XLSX neutralise formula-like text; the
    HTML report escapes markup;
(e) the upload cap; (f) the XLSX zip-bomb guard; (g) the same bytes twice;
(h) analyst-only actions (``auth.require_analyst``, ``cached.write``, the pages).
"""

from __future__ import annotations

import ast
import copy
import datetime as dt
import io
import json
import re
import struct
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from analytics import store
from analytics.filters import Filters, Territory
from analytics.ingest import ImportRefused, common, import_file
from analytics.ingest.common import Options

ROOT = Path(__file__).resolve().parent.parent

EVIL = "'; DROP TABLE mandats; --"
EVIL2 = 'Robert"); DROP TABLE contracts; --'
EVIL_TEXTS = (EVIL, EVIL2, "x' OR '1'='1", "$1; SELECT 42", "a\\'; --")

# =========================================================================================
# (a) SQL built from text: every site, reviewed
# =========================================================================================

SQL_WORDS = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|FROM|WHERE|JOIN|VALUES|DESCRIBE|COPY|"
    r"ATTACH|PRAGMA|LIMIT|EXCLUDE|UNION|MACRO)\b|\b(read_csv|read_parquet|read_json|list_contains)\s*\("
)

# (file, enclosing function) -> number of SQL-building expressions reviewed there.
# Reviewed 2026-11 (audit): in every site below, what is interpolated is one of
#   * an identifier from a whitelist (dict lookup on a fixed key, Territory.column, a
#     constant table/view name, generated positional column names c0…cN / f_<field>);
#   * an SQL fragment built the same way by a helper of the module (recursively reviewed);
#   * an int() / a module constant (MAX_REJECTS_STORED, distance bins, period index);
#   * (the SIRENE / lists / insertion importers now read the file's columns as generated
#     c0…cN too: headers and file names go as $parameters, see test_headers_and_file_names_*);
# never a value typed by a user: values go as $parameters.
REVIEWED_SQL_SITES: dict[tuple[str, str], int] = {
    # demo: the fixed list of demo tables, to count their rows
    ("analytics/demo.py", "build"): 1,
    # facets: STRUCTURES_SQL.format(column=TERRITORY_COLUMN[kind]) - whitelist; codes are $codes
    ("analytics/facets.py", "structures_in_territory"): 1,
    # facets: each choice from the lines or from import_facets, constant texts joined
    ("analytics/facets.py", "<module>"): 6,
    # footprint: SUPPLIER_CLASS_SQL[c] for known classes only; Territory.column; HOLDER_COLUMN
    # map; population column by t.kind from a fixed dict; codes as $territory_codes / $codes
    # mandats_monthly: constant statements; the import id is $i
    # _SELECT, _REFILL_FIRST, REBUILD, NAMES_REBUILD, SUMS_REBUILD: constants joined or
    # formatted with constant WHERE clauses
    ("analytics/aggregates.py", "<module>"): 18,  # + SUMS_REBUILD (v6), the merged sums and facets (v7): constant statements
    ("analytics/aggregates.py", "_ready"): 2,  # table names from a constant tuple
    ("analytics/aggregates.py", "_counts_every_line"): 1,  # the count subquery: constant text of its two callers
    ("analytics/aggregates.py", "add_import"): 8,  # + import_facets (constant text, $i)
    ("analytics/aggregates.py", "remove_import"): 2,
    ("analytics/footprint.py", "_filter_classes"): 1,
    ("analytics/footprint.py", "<module>"): 2,  # PAID_SQL, PAID_SUMS_SQL: constants joined
    # the paid, sums or notified statement: the territory test (whitelisted column),
    # conditions with $parameters (_filters_sql), a table and period of our own
    ("analytics/footprint.py", "spend_rows"): 3,
    ("analytics/footprint.py", "_population_share"): 1,
    ("analytics/footprint.py", "_territory_expr"): 2,  # Territory.column is whitelisted
    # ids: SIRET cleaning over a sub-select given by the importers (constant SQL)
    ("analytics/ids.py", "clean_siret_table_sql"): 1,
    # indicators: filter_sql() builds every WHERE from fixed conditions with $parameters
    # (services, natures, CPV, procedures, buyer, dates, amounts); dimension, territory and
    # reference column names from DIMENSIONS / TERRITORY_COLUMNS / Territory.column /
    # duckdb_columns() of our own ref views; _suffixed() renames $parameters only
    ("analytics/indicators.py", "_category_names"): 1,
    # TOTALS_BLOCK, LIGHT_BLOCK, LIGHT_BY_YEAR_SQL from TOTALS_COLUMNS and constant text; the
    # contract statements (one period and grouped periods) joined from constant column lists and CTEs
    ("analytics/indicators.py", "<module>"): 8,
    ("analytics/indicators.py", "_first_seen_sql"): 3,  # + the mandats_monthly variant (same buyer $param)
    ("analytics/indicators.py", "_group"): 1,
    # filter_sql's WHERE, its date condition (a constant) swapped for the periods' columns;
    # "FALSE" for the facts over no contract; the holder-key expression (constant)
    ("analytics/indicators.py", "_contract_facts"): 6,
    ("analytics/indicators.py", "_history_sql"): 3,  # + the mandats_monthly variant
    ("analytics/indicators.py", "_ref_names_sql"): 1,
    ("analytics/indicators.py", "_spend_by_place"): 2,
    ("analytics/indicators.py", "_territory_sql"): 1,
    ("analytics/indicators.py", "_value_blocks"): 3,
    ("analytics/indicators.py", "concentration"): 1,
    ("analytics/indicators.py", "contracts_table"): 1,
    ("analytics/indicators.py", "distance_distribution"): 2,
    ("analytics/indicators.py", "env_2026_compliance"): 1,
    ("analytics/indicators.py", "local_share_by_category"): 1,
    ("analytics/indicators.py", "lorenz_curve"): 1,
    ("analytics/indicators.py", "monthly_series"): 1,
    ("analytics/indicators.py", "new_suppliers"): 1,
    ("analytics/indicators.py", "reconciliation"): 1,
    (
        "analytics/indicators.py",
        "spend_sql",
    ): 8,  # + PAID_MONTHLY_SPEND_SQL, PAID_MERGED_SPEND_SQL (constant dims, $params)  # + holder-key expression (constant) for $supplier_keys  # + the split period's two parts in the monthly template (constant templates and dims, $params)
    ("analytics/indicators.py", "suppliers_table"): 1,  # search text is $search
    ("analytics/indicators.py", "top_suppliers"): 1,
    ("analytics/indicators.py", "_raw_names"): 1,  # spend_sql; keys are $supplier_keys
    ("analytics/indicators.py", "supplier_history"): 1,  # spend_sql; the key is $supplier_keys
    # undo: table names from store.IMPORT_TABLES (constant)
    ("analytics/ingest/common.py", "undo_import"): 2,
    # DECP: headers are mapped to positional c<i> / f_<field> / h<k>_<key> names (never header
    # text); paths and delimiter are $parameters; labels and lists mapped in Python
    ("analytics/ingest/decp.py", "_create_stage"): 2,
    ("analytics/ingest/decp.py", "_drop_stage"): 1,
    ("analytics/ingest/decp.py", "_finalise"): 3,
    ("analytics/ingest/decp.py", "_link_modification_rows"): 1,
    ("analytics/ingest/decp.py", "_map_lists"): 1,
    ("analytics/ingest/decp.py", "_map_sirets"): 1,
    ("analytics/ingest/decp.py", "_open_table"): 2,
    ("analytics/ingest/decp.py", "_stage_tabular"): 13,
    ("analytics/ingest/decp.py", "sql_clean_siret_table"): 1,
    # insertion / lists / SIRENE: positional c<i> columns (sirene._gen / _checked) and field
    # names from the module's dicts; headers and file names are $parameters; temp tables constant
    ("analytics/ingest/insertion.py", "_load"): 1,
    ("analytics/ingest/insertion.py", "load"): 1,
    ("analytics/ingest/lists.py", "_load_structures"): 3,
    ("analytics/ingest/lists.py", "load_ess"): 2,
    ("analytics/ingest/lists.py", "load_structures"): 1,
    ("analytics/ingest/sirene.py", "_load_etablissements"): 4,
    ("analytics/ingest/sirene.py", "_load_unites"): 3,
    ("analytics/ingest/sirene.py", "_read_xlsx"): 1,
    ("analytics/ingest/sirene.py", "insert_rejects"): 2,
    ("analytics/ingest/sirene.py", "read_tabular"): 4,
    # mandats: positional c<i> columns and field names from SYNONYMS; read_csv options are
    # int() / generated / $parameters (path, delimiter); int(exercice) checked in range
    ("analytics/ingest/mandats.py", "_create_raw"): 1,
    ("analytics/ingest/mandats.py", "_csv_line_numbers"): 1,
    ("analytics/ingest/mandats.py", "_drop_temp"): 2,
    ("analytics/ingest/mandats.py", "_fallback_sql"): 2,
    ("analytics/ingest/mandats.py", "_insert_sql"): 1,
    ("analytics/ingest/mandats.py", "_keyed_sql"): 1,
    ("analytics/ingest/mandats.py", "_load_source"): 3,
    ("analytics/ingest/mandats.py", "_lookup_tables"): 2,
    ("analytics/ingest/mandats.py", "_lookup_tables.distinct"): 1,
    ("analytics/ingest/mandats.py", "_occurrence_sql"): 2,
    ("analytics/ingest/mandats.py", "_parse_sql"): 1,
    ("analytics/ingest/mandats.py", "_register"): 1,  # values are $parameters (lists)
    ("analytics/ingest/mandats.py", "_rows_view_sql"): 1,
    ("analytics/ingest/mandats.py", "_stage_csv"): 1,
    # levers: CPV_NAF constant pairs; Territory.column; WHERE from filter helpers ($params)
    ("analytics/levers.py", "actors_by_cpv"): 1,
    ("analytics/levers.py", "_local_smes_by_cpv"): 1,
    ("analytics/levers.py", "_naf_map_sql"): 1,
    ("analytics/levers.py", "_territory_filter"): 1,
    ("analytics/levers.py", "lots"): 2,
    ("analytics/levers.py", "purchases_by_threshold"): 1,
    ("analytics/levers.py", "renewals"): 1,
    ("analytics/levers.py", "reservation"): 1,
    ("analytics/levers.py", "territory_actors"): 1,
    # previews: TARGET_TABLE[kind] (kind checked against LOADERS first)
    ("analytics/previews.py", "preview"): 1,
    # referential: HOLDER_KEY_SQL / class SQL constants; ref view and column names from a
    # fixed dict by t.kind; Territory.column; keys and codes as $parameters
    # HOLDER_KEY_SQL (constant) in _HOLDER_KEYS, itself in the _DATA_KEYS / _TOUCHED_KEYS variants
    ("analytics/referential.py", "<module>"): 5,
    ("analytics/referential.py", "_check_territory"): 2,
    ("analytics/referential.py", "_class_sql"): 1,
    ("analytics/referential.py", "_ensure_ref_views"): 1,
    ("analytics/referential.py", "_known"): 1,
    ("analytics/referential.py", "classify_keys"): 2,
    (
        "analytics/referential.py",
        "reclassify",
    ): 4,  # CLASS_COLUMNS, _DATA_KEYS, HOLDER_KEY_SQL; import_id is $i
    ("analytics/referential.py", "territory_predicate"): 1,
    ("analytics/referential.py", "supplier_info"): 1,  # CLASS_COLUMNS: a constant tuple of column names
    # store: the shipped data/ref/*.parquet path, quote-escaped (DDL takes no parameters)
    ("analytics/store.py", "_create_reference_views"): 1,  # and a constant view name
    ("analytics/store.py", "share_reference"): 2,  # the constant REF_CATALOG, in ATTACH and the view names
    ("analytics/store.py", "<module>"): 1,  # migration 3: a constant DROP + aggregates.REBUILD
}


def _sql_like(text: str) -> bool:
    return bool(SQL_WORDS.search(text))


def sql_building_sites(path: Path) -> list[tuple[str, str, int]]:
    """(function, how, line) of every expression building SQL text from non-constant parts."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    consts = {
        t.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    sites: list[tuple[str, str, int]] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, [*scope, child.name])
                continue
            how = None
            if isinstance(child, ast.JoinedStr):
                text = "".join(v.value for v in child.values if isinstance(v, ast.Constant))
                if any(isinstance(v, ast.FormattedValue) for v in child.values) and _sql_like(text):
                    how = "f-string"
            elif isinstance(child, ast.BinOp) and isinstance(child.op, ast.Mod):
                left = child.left
                if isinstance(left, ast.Constant) and isinstance(left.value, str) and _sql_like(left.value):
                    how = "%"
            elif isinstance(child, ast.BinOp) and isinstance(child.op, ast.Add):
                sides = (child.left, child.right)
                if any(
                    isinstance(s, ast.Constant) and isinstance(s.value, str) and _sql_like(s.value)
                    for s in sides
                ) and not all(isinstance(s, ast.Constant) for s in sides):
                    how = "+"
            elif (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and child.func.attr == "format"
            ):
                base = child.func.value
                text = (
                    base.value
                    if isinstance(base, ast.Constant) and isinstance(base.value, str)
                    else consts.get(base.id)
                    if isinstance(base, ast.Name)
                    else None
                )
                if text and _sql_like(text):
                    how = ".format"
            if how:
                sites.append((".".join(scope) or "<module>", how, child.lineno))
            visit(child, scope)

    visit(tree, [])
    return sites


def _scanned_files() -> list[Path]:
    files = [*ROOT.glob("analytics/**/*.py"), *ROOT.glob("pages/*.py"), ROOT / "dashboard.py"]
    return sorted(p for p in files if p.exists())


def test_scanner_finds_the_unsafe_patterns(tmp_path):
    """The scan itself: it must see every way of formatting a value into SQL."""
    src = tmp_path / "bad.py"
    src.write_text(
        "Q = 'SELECT * FROM t WHERE a = {v}'\n"
        "def f(con, name):\n"
        "    con.execute(f\"SELECT * FROM mandats WHERE supplier_name = '{name}'\")\n"
        "    con.execute(\"DELETE FROM t WHERE a = '%s'\" % name)\n"
        "    con.execute(\"UPDATE t SET a = '{}'\".format(name))\n"
        "    con.execute(Q.format(v=name))\n"
        '    con.execute("SELECT * FROM t WHERE a = \'" + name + "\'")\n'
        "    con.execute('SELECT * FROM t WHERE a = $a', {'a': name})\n"
        "    print(f'Import n° {name} : terminé')\n"
    )
    hows = sorted(h for _, h, _ in sql_building_sites(src))
    assert hows == ["%", "+", ".format", ".format", "f-string"]


def test_no_sql_text_is_built_from_unreviewed_values():
    found: Counter = Counter()
    lines: dict[tuple[str, str], list[int]] = {}
    for path in _scanned_files():
        rel = path.relative_to(ROOT).as_posix()
        for func, _how, line in sql_building_sites(path):
            found[(rel, func)] += 1
            lines.setdefault((rel, func), []).append(line)
    problems = []
    for key, n in sorted(found.items()):
        allowed = REVIEWED_SQL_SITES.get(key)
        if allowed is None:
            problems.append(f"{key[0]}:{lines[key]} in {key[1]}(): SQL built by formatting, not reviewed")
        elif n > allowed:
            problems.append(f"{key[0]}:{lines[key]} in {key[1]}(): {n} sites, {allowed} reviewed")
    assert not problems, (
        "Values must go as $parameters; identifiers only from whitelists. Review each site and, "
        "if it is safe, add it to REVIEWED_SQL_SITES with the reason:\n" + "\n".join(problems)
    )


# =========================================================================================
# Helpers: a small database holding hostile text
# =========================================================================================

SIRET_A = "73282932000074"
INSERSOL = "37839168400032"


def table_counts(con) -> dict[str, int]:
    names = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_type = 'BASE TABLE' ORDER BY 1"
        ).fetchall()
    ]
    return {
        n: con.execute(f"SELECT count(*) FROM {n}").fetchone()[0] for n in names
    }  # names from the catalog


def assert_schema_intact(con) -> None:
    counts = table_counts(con)
    for t in ("imports", "mandats", "contracts", "contract_holders", "structures", "settings",
              "snapshots", "spaser_targets", "supplier_class"):  # fmt: skip
        assert t in counts, f"table {t} disappeared"


def write_mandats(path: Path, names: list[str], day: int = 1) -> Path:
    rows = ["Date de paiement;Fournisseur;SIRET;Montant TTC;Service;Imputation;Objet"]
    for i, name in enumerate(names):
        quoted = '"' + name.replace('"', '""') + '"'
        rows.append(f"{day:02d}/0{1 + i % 9}/2024;{quoted};;{100 + i},00;{quoted};{quoted};{quoted}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _imp(con, kind, path, **kw):
    return import_file(con, kind, path, Options(**kw))


# =========================================================================================
# (b) hostile text is data
# =========================================================================================


def test_supplier_names_with_quotes_and_semicolons_are_data(con, tmp_path):
    names = [*EVIL_TEXTS, '=HYPERLINK("http://x";"clic")']
    r = _imp(con, "mandats", write_mandats(tmp_path / "m.csv", names))
    assert r.rows_loaded == len(names)
    assert_schema_intact(con)
    stored = {row[0] for row in con.execute("SELECT supplier_name FROM mandats").fetchall()}
    assert stored == set(names)
    services = {row[0] for row in con.execute("SELECT service FROM mandats").fetchall()}
    assert services == set(names)
    # the engine reads them back through every filter without breaking
    from analytics import indicators

    f = Filters.year(2024, services=(EVIL,), natures=(EVIL,), procedures=(EVIL2,), cpv_divisions=(EVIL,))
    d = indicators.headline_json(con, f)
    assert d["total_spend"] == pytest.approx(100.0)  # the one line of the EVIL service
    d = indicators.headline_json(con, Filters.year(2024, buyer_siret=EVIL))
    assert d["total_spend"] is None
    table = indicators.suppliers_table(con, Filters.year(2024), search=EVIL)
    assert list(table["amount"]) == [pytest.approx(100.0)]
    assert_schema_intact(con)
    assert con.execute("SELECT count(*) FROM mandats").fetchone()[0] == len(names)


def test_decp_text_fields_are_data(con, tmp_path, shared):
    src = json.loads(
        (shared / "decp" / "megalis-bretagne__decp-59920013600241-2024-07-09-01.json").read_text()
    )
    rec = copy.deepcopy(src["marches"]["marche"][0])
    rec.update(id="X'; DROP TABLE contracts; --", objet=EVIL2, procedure=EVIL)
    path = tmp_path / "decp.json"
    path.write_text(json.dumps({"marches": {"marche": [rec]}}), encoding="utf-8")
    r = _imp(con, "decp", path)
    assert r.contracts == 1
    assert_schema_intact(con)
    assert con.execute("SELECT id, objet FROM contracts").fetchone() == (
        "X'; DROP TABLE contracts; --",
        EVIL2,
    )


def test_headers_and_file_names_with_quotes_are_data(con, tmp_path):
    """The SIRENE-family readers put header names and file names into SQL text, escaped:
    hostile ones must come out as plain data."""
    h_kind = "type'); DROP TABLE structures; --"
    h_name = 'nom"; DROP TABLE mandats; --'
    text = (
        f'siret;"{h_kind}";"{h_name.replace(chr(34), chr(34) * 2)}";code_postal\n'
        f'{INSERSOL};ACI;"{EVIL}";59000\n'
        f"{SIRET_A};PAS UN TYPE;Autre;59000\n"
    )
    path = tmp_path / f"liste{EVIL}.csv"
    path.write_text(text, encoding="utf-8")
    mapping = {h_kind: "kind", h_name: "name"}
    r = _imp(con, "structures", path, mapping=mapping)
    assert (r.rows_loaded, r.rows_rejected) == (1, 1)
    assert_schema_intact(con)
    assert con.execute("SELECT name, kind, source FROM structures").fetchone() == (EVIL, "ACI", path.name)
    assert con.execute("SELECT column_name, raw_value FROM rejected_rows").fetchone() == (
        h_kind,
        "PAS UN TYPE",
    )
    # an ESS list whose file name holds a quote and a glob character
    ess = tmp_path / "ess'[1]*.csv"
    ess.write_text(f'siren;nom\n100029172;"{EVIL}"\n', encoding="utf-8")
    (tmp_path / "ess'1x.csv").write_text("siren;nom\n100070044;autre\n", encoding="utf-8")  # glob bait
    r = _imp(con, "ess", ess)
    assert r.rows_loaded == 1, "the glob characters of the file name must not read other files"
    assert con.execute("SELECT name FROM ess_list").fetchall() == [(EVIL,)]
    assert con.execute(
        "SELECT file_name FROM imports WHERE import_id = $i", {"i": r.import_id}
    ).fetchone() == (ess.name,)


def test_buyer_name_snapshot_comment_and_who_are_data(con, tmp_path):
    from analytics import referential, review

    out = referential.set_buyer(con, siret="59920013600241", territory=Territory.parse("dep:59"), name=EVIL,
                                who=EVIL2)  # fmt: skip
    assert out["name"] == EVIL
    assert referential.get_buyer(con)["name"] == EVIL
    snap = review.take_snapshot(con, "2024-06", comment=EVIL, who=EVIL2)
    assert review.snapshots(con)[0]["comment"] == EVIL
    assert review.review(con, "2024-06")["snapshot"]["snapshot_id"] == snap["snapshot_id"]
    row = con.execute("SELECT comment, created_by FROM snapshots").fetchone()
    assert row == (EVIL, EVIL2)
    assert_schema_intact(con)


def test_target_indicator_names_are_whitelisted(con):
    from analytics import spaser

    before = table_counts(con)
    for bad in (EVIL, "ess_share'; --", "ess_share OR 1=1"):
        with pytest.raises(ValueError, match="inconnu"):
            spaser.set_target(con, bad, 2026, 0.5)
    assert table_counts(con) == before
    spaser.set_target(con, "ess_share", 2026, 0.25, who=EVIL)
    assert con.execute("SELECT indicator, target, updated_by FROM spaser_targets").fetchall() == [
        ("ess_share", 0.25, EVIL)
    ]


def test_hostile_text_on_the_command_line(tmp_path):
    db = tmp_path / "cli.duckdb"

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "analytics", "--db", str(db), *args],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    assert run("buyer", "set", "--siret", "59920013600241", "--name", EVIL).returncode == 0
    shown = json.loads(run("buyer", "show", "--json").stdout)
    assert shown["name"] == EVIL
    assert run("snapshot", "--month", "2024-06", "--comment", EVIL).returncode == 0
    for args, fragment in (
        (("targets", "set", "--indicator", EVIL, "--year", "2026", "--value", "0.5"), "inconnu"),
        (("indicators", "--year", "2024", "--territory", f"dep:59{EVIL}"), "Territoire invalide"),
        (("indicators", "--year", "2024", "--territory", EVIL), "Territoire invalide"),
        (("supplier", EVIL, "--json"), "invalide"),
    ):
        out = run(*args)
        assert out.returncode == 2 and fragment in out.stderr and "Traceback" not in out.stderr, out.stderr
    out = run("indicators", "--year", "2024", "--buyer", EVIL, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["scope"]["buyer"] == EVIL
    con = store.connect(db)
    try:
        assert_schema_intact(con)
        assert con.execute("SELECT comment FROM snapshots").fetchone()[0] == EVIL
    finally:
        con.close()


# =========================================================================================
# (c) Territory.parse
# =========================================================================================


@pytest.mark.parametrize(
    "text",
    [
        f"dep:59{EVIL}",
        "dep:59'",
        "dep:59;",
        "dep:59 OR 1=1",
        "dep:59) --",
        "reg:32/*",
        "com:59163,59350'); DELETE FROM mandats; --",
        "epci:$x",
        "epci:200093201\x00",
        "dep:",
        "dep:,",
        "pays:FR",
        "",
        "59",
        "dep=59",
        EVIL,
    ],
)
def test_territory_parse_rejects_injection_text(text):
    with pytest.raises(ValueError, match="Territoire invalide"):
        Territory.parse(text)


@pytest.mark.parametrize(
    "text, kind, codes",
    [("dep:59", "dep", ("59",)), ("DEP : 2a, 2B", "dep", ("2A", "2B")), ("reg:32", "reg", ("32",)),
     ("epci:200093201", "epci", ("200093201",)), ("com:59163,59350", "com", ("59163", "59350"))],
)  # fmt: skip
def test_territory_parse_accepts_the_documented_forms(text, kind, codes):
    t = Territory.parse(text)
    assert (t.kind, t.codes) == (kind, codes)


def test_territory_codes_built_by_hand_stay_parameters(con, tmp_path):
    """A Territory built without parse (a page, a cache) still only reaches SQL as $codes."""
    from analytics import footprint, indicators, levers

    _imp(con, "mandats", write_mandats(tmp_path / "m.csv", ["ACME", "Bidule"]))
    t = Territory("dep", (EVIL, "59"))
    f = Filters.year(2024, territory=t)
    d = indicators.headline_json(con, f)
    assert d["total_spend"] == pytest.approx(201.0)
    footprint.footprint_json(con, f)
    levers.opportunities(con, f)
    assert_schema_intact(con)
    with pytest.raises(KeyError):
        _ = Territory("dep; DROP TABLE mandats", ("59",)).column  # kinds are a whitelist


# =========================================================================================
# (d) exports neutralise formulas; the HTML report escapes markup
# =========================================================================================

FORMULAS = ["=1+2", "+33 1 23", "-2+3", "@SUM(A1)", "=cmd|' /C calc'!A0", "\t=1", "\r=1",
            '=HYPERLINK("http://x","clic")']  # fmt: skip
DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def _xlsx_cells(data: bytes):
    import openpyxl

    wb = openpyxl.load_workbook(io.BytesIO(data))
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                yield ws.title, cell


def _assert_no_formula(data: bytes) -> list[str]:
    texts = []
    for title, cell in _xlsx_cells(data):
        assert cell.data_type != "f", (title, cell.coordinate, cell.value)
        if isinstance(cell.value, str):
            assert not cell.value.startswith(DANGEROUS), (title, cell.coordinate, cell.value)
            texts.append(cell.value)
    return texts


def test_exports_xlsx_and_csv_neutralise_formulas():
    from analytics import exports

    df = pd.DataFrame({"fournisseur": FORMULAS, "montant": [-12.5] * len(FORMULAS), "=titre": FORMULAS})
    data = exports.to_xlsx_bytes({"=Feuille": df, "Autre": df})
    texts = _assert_no_formula(data)
    for v in FORMULAS:  # (openpyxl reads a stored carriage return back as _x000D_)
        assert "'" + v.replace("\r", "_x000D_") in texts, v
    numbers = [c.value for _, c in _xlsx_cells(data) if c.data_type == "n" and c.value is not None]
    assert numbers.count(-12.5) == 2 * len(FORMULAS)  # negative numbers stay numbers
    import csv

    rows = list(csv.reader(io.StringIO(exports.to_csv_bytes(df).decode("utf-8-sig")), delimiter=";"))
    assert rows[0][2] == "'=titre"
    for row in rows[1:]:
        assert row[1] == "-12,5"  # a number, not text to neutralise
        for cell in (row[0], row[2]):
            assert cell.startswith("'") and not cell.startswith(DANGEROUS), row


@pytest.fixture
def hostile_db(con, tmp_path):
    """A year of spend whose supplier names are formulas and markup, and such a buyer."""
    from analytics import referential

    names = [*FORMULAS[:5], "<script>alert('x')</script>", "<img src=x onerror=alert(1)>"]
    _imp(con, "mandats", write_mandats(tmp_path / "m.csv", names))
    referential.set_buyer(con, siret="59920013600241", territory=Territory.parse("dep:59"),
                          name="@SUM(1+1) <b>acheteur</b>")  # fmt: skip
    return con


def test_report_xlsx_neutralises_formulas(hostile_db, tmp_path):
    from analytics import report

    path = report.write_report(hostile_db, year=2024, fmt="xlsx", out=tmp_path / "r.xlsx")
    texts = _assert_no_formula(path.read_bytes())
    assert "'@SUM(1+1) <b>acheteur</b>" in texts  # the buyer sheet
    assert any(t.startswith("'=") for t in texts), "the suppliers' names are in the report"


def test_report_html_escapes_markup(hostile_db, tmp_path):
    from analytics import report

    page = report.write_report(hostile_db, year=2024, fmt="html", out=tmp_path / "r.html").read_text()
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>acheteur" not in page
    assert "&lt;b&gt;acheteur" in page


# =========================================================================================
# (e) upload cap, (f) zip bomb, (g) same bytes twice
# =========================================================================================


def test_upload_cap_refuses_an_oversize_file_and_changes_nothing(con, tmp_path, monkeypatch):
    path = write_mandats(tmp_path / "big.csv", [f"Fournisseur {i}" for i in range(200)])
    size = path.stat().st_size
    before = table_counts(con)
    monkeypatch.setattr(common, "MAX_UPLOAD_BYTES", size - 1)
    with pytest.raises(ImportRefused, match="taille maximale"):
        _imp(con, "mandats", path)
    with pytest.raises(ImportRefused, match="taille maximale"):
        common.check_size(path)
    assert common.check_size(path, max_bytes=size) == size
    assert table_counts(con) == before
    monkeypatch.setattr(common, "MAX_UPLOAD_BYTES", size)
    assert _imp(con, "mandats", path).rows_loaded == 200


def test_upload_cap_from_the_environment_on_the_command_line(tmp_path):
    db = tmp_path / "cap.duckdb"
    path = tmp_path / "big.csv"
    line = "01/02/2024;ACME;;10,00\n"
    path.write_text("Date;Fournisseur;SIRET;Montant\n" + line * (1024 * 1024 // len(line) + 10))
    out = subprocess.run(
        [sys.executable, "-m", "analytics", "--db", str(db), "import", "mandats", str(path), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "EMPREINTE_MAX_UPLOAD_MB": "1"},
    )  # fmt: skip
    assert out.returncode == 2 and "taille maximale autorisée (1 Mo)" in out.stderr, out.stderr
    assert out.stdout == ""
    con = store.connect(db)
    try:
        assert con.execute("SELECT count(*) FROM imports").fetchone()[0] == 0
    finally:
        con.close()


def crafted_xlsx(path: Path, declared: int = 0xF0000000) -> Path:
    """A tiny .xlsx whose sheet claims ~4 GB once inflated (sizes patched in both headers)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
        z.writestr("xl/worksheets/sheet1.xml", b"\0" * 100_000)
    data = bytearray(buf.getvalue())
    name = b"xl/worksheets/sheet1.xml"
    for sig, name_len_at, name_at, size_at in ((b"PK\x01\x02", 28, 46, 24), (b"PK\x03\x04", 26, 30, 22)):
        i = data.find(sig)
        while i >= 0:
            n = struct.unpack_from("<H", data, i + name_len_at)[0]
            if data[i + name_at : i + name_at + n] == name:
                struct.pack_into("<I", data, i + size_at, declared)
            i = data.find(sig, i + 4)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("kind", ["mandats", "sirene", "structures", "ess", "insertion"])
def test_xlsx_bomb_is_refused_and_changes_nothing(con, tmp_path, kind):
    path = crafted_xlsx(tmp_path / f"bombe_{kind}.xlsx")
    assert sum(i.file_size for i in zipfile.ZipFile(path).infolist()) > common.MAX_XLSX_UNCOMPRESSED
    before = table_counts(con)
    with pytest.raises(ImportRefused, match="décompressé"):
        _imp(con, kind, path)
    assert table_counts(con) == before


def test_xlsx_bomb_is_refused_before_anything_is_inflated(tmp_path, monkeypatch):
    """An honest bomb (sizes true, content huge) is refused on the declared sizes alone."""
    path = tmp_path / "vraie_bombe.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/workbook.xml", "<workbook/>")
        z.writestr("xl/worksheets/sheet1.xml", b"\0" * (8 * 1024 * 1024))
    monkeypatch.setattr(common, "MAX_XLSX_UNCOMPRESSED", 1024 * 1024)

    def no_inflate(self):
        raise AssertionError("testzip() inflated the archive before the size check")

    monkeypatch.setattr(zipfile.ZipFile, "testzip", no_inflate)
    with pytest.raises(ImportRefused, match="décompressé"):
        common.check_xlsx(path)


def test_same_bytes_twice_refused_naming_the_first_import(con, tmp_path):
    path = write_mandats(tmp_path / "a.csv", ["ACME", "Bidule"])
    first = _imp(con, "mandats", path)
    before = table_counts(con)
    when = dt.date.today().strftime("%d/%m/%Y")
    with pytest.raises(ImportRefused, match=rf"import n° {first.import_id} du {when}"):
        _imp(con, "mandats", path)
    renamed = tmp_path / "autre_nom.csv"
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(ImportRefused, match=rf"import n° {first.import_id} "):
        _imp(con, "mandats", renamed)
    assert table_counts(con) == before


# =========================================================================================
# (h) analyst-only actions
# =========================================================================================


@pytest.fixture
def login_on(tmp_path, monkeypatch):
    """Login on (OIDC configured + a roles file); the signed-in user is set per test."""
    from analytics import auth

    roles = tmp_path / "roles.toml"
    roles.write_text('default = ""\n[roles]\n"analyste@ville.fr" = "analyst"\n"@ville.fr" = "reader"\n')
    monkeypatch.setenv("EMPREINTE_ROLES", str(roles))
    monkeypatch.delenv("EMPREINTE_ROLE", raising=False)
    monkeypatch.setattr(auth, "_auth_configured", lambda: True)
    user: dict = {}
    monkeypatch.setattr(auth, "_user", lambda: dict(user))
    return user


def test_require_analyst_raises_for_a_reader_when_login_is_on(login_on):
    from analytics import auth

    assert auth.login_enabled()
    login_on.update(is_logged_in=True, email="elu@ville.fr")
    with pytest.raises(auth.PermissionDenied, match="analystes"):
        auth.require_analyst()
    login_on.update(email="inconnu@ailleurs.fr")  # no role at all
    with pytest.raises(auth.PermissionDenied):
        auth.require_analyst()
    login_on.clear()  # logged out
    with pytest.raises(auth.PermissionDenied):
        auth.require_analyst()
    login_on.update(is_logged_in=True, email="analyste@ville.fr")
    assert auth.require_analyst() == "analyste@ville.fr"


def test_forced_reader_role_cannot_write_even_without_login(monkeypatch):
    from analytics import auth

    monkeypatch.setenv("EMPREINTE_ROLE", "reader")
    with pytest.raises(auth.PermissionDenied):
        auth.require_analyst()


def test_cached_write_checks_the_role_before_running_anything(login_on):
    from analytics import auth, cached

    login_on.update(is_logged_in=True, email="elu@ville.fr")
    called = []
    with pytest.raises(auth.PermissionDenied):
        cached.write(lambda cur, who: called.append(who))
    assert called == []


WRITE_FUNCTIONS = {"import_file", "undo_import", "set_target", "delete_target", "set_buyer", "take_snapshot",
                   "reclassify", "run_import"}  # fmt: skip


def test_pages_write_only_through_the_role_check():
    """In pages/, every write function is run inside cached.write(…) (which checks the role)
    or in a function that calls auth.require_analyst() itself."""
    problems = []
    for path in sorted(ROOT.glob("pages/*.py")) + [ROOT / "dashboard.py"]:
        if not path.exists():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}

        def calls_require_analyst(fn: ast.AST) -> bool:
            return any(
                isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute | ast.Name)
                and (n.func.attr if isinstance(n.func, ast.Attribute) else n.func.id) == "require_analyst"
                for n in ast.walk(fn)
            )

        for node in ast.walk(tree):
            name = (
                node.attr
                if isinstance(node, ast.Attribute)
                else node.id
                if isinstance(node, ast.Name)
                else None
            )
            if name not in WRITE_FUNCTIONS:
                continue
            up, ok, func = node, False, None
            while up in parents:
                up = parents[up]
                if (
                    isinstance(up, ast.Call)
                    and isinstance(up.func, ast.Attribute)
                    and up.func.attr == "write"
                    and isinstance(up.func.value, ast.Name)
                    and up.func.value.id == "cached"
                ):
                    ok = True
                    break
                if func is None and isinstance(up, ast.FunctionDef | ast.AsyncFunctionDef):
                    func = up
            if not ok and not (func is not None and calls_require_analyst(func)):
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert not problems, "writes without the analyst check: " + ", ".join(problems)
