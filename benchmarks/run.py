"""The benchmark: import throughput, indicator latency, memory, figure sizes.

    make bench                      # 100k and 1M lines (about 5 minutes)
    make bench BENCH_ARGS="--sizes 100000,1000000,10000000"   # adds 10M (about 20 minutes)

Every figure is the median of --runs runs, measured in this one process run so that
ratios (product vs bare DuckDB vs pandas) are fair. Results go to BENCHMARKS.md.
Nothing here is asserted: the targets are written beside the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from benchmarks.generate import write_decp, write_mandats, write_sirene  # noqa: E402

# Contracts notified per year in the query databases (DECP flat CSV): a département or a
# large city publishes a few thousand a year; 5,000 for the 1M-line years, 500 at 100k.
DECP_PER_MILLION_LINES = 5_000


def median_time(fn, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def child_peak_rss(code: str, env: dict | None = None) -> tuple[float, str]:
    """Run code in a fresh interpreter; return its peak RSS (MB) and stdout."""
    # VmHWM is this process image's own peak; ru_maxrss would include the pages the
    # child shared with this (large) benchmark process at fork time.
    wrapper = (
        code
        + "\nimport re, sys\n"
        + "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
        + "print('PEAK_RSS_KB', hwm, file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=True,
    )
    kb = next(int(line.split()[1]) for line in out.stderr.splitlines() if line.startswith("PEAK_RSS_KB"))
    return kb / 1024, out.stdout


def bench_import(csv_path: Path, sirene_path: Path, runs: int, workdir: Path) -> dict:
    from analytics import store
    from analytics.ingest import import_file

    lines = sum(1 for _ in open(csv_path, "rb")) - 1
    mb = csv_path.stat().st_size / 1e6

    keep = workdir / f"q_{lines}.duckdb"

    def product():
        db = workdir / f"p_{time.perf_counter_ns()}.duckdb"
        con = store.connect(db)
        import_file(con, "sirene", sirene_path)
        t0 = time.perf_counter()
        import_file(con, "mandats", csv_path)
        product.last = time.perf_counter() - t0
        con.close()
        db.replace(keep)  # the last run's database serves the query benchmark

    def timed_product():
        product()
        return product.last

    def bare():
        db = workdir / f"b_{time.perf_counter_ns()}.duckdb"
        utf8 = workdir / "bare_utf8.csv"
        con = duckdb.connect(str(db))
        # DuckDB reads UTF-8: transcoding is part of the ceiling too
        with open(csv_path, encoding="cp1252") as src, open(utf8, "w", encoding="utf-8") as dst:
            for chunk in iter(lambda: src.read(1 << 23), ""):
                dst.write(chunk)
        con.execute(
            f"CREATE TABLE t AS SELECT * FROM read_csv('{utf8}', delim=';', header=true, all_varchar=true)"
        )
        con.close()
        db.unlink()

    def pandas_path():
        import pandas as pd

        db = workdir / f"pd_{time.perf_counter_ns()}.duckdb"
        df = pd.read_csv(csv_path, sep=";", encoding="cp1252", dtype=str)
        for col in ("Montant HT", "Montant TTC"):
            df[col] = pd.to_numeric(df[col].str.replace("\u00a0", "").str.replace(",", "."), errors="coerce")
        for col in ("Date émission", "Date paiement", "Date réception facture"):
            df[col] = pd.to_datetime(df[col], format="%d/%m/%Y", errors="coerce")
        con = duckdb.connect(str(db))
        con.register("df", df)
        con.execute("CREATE TABLE t AS SELECT * FROM df")
        con.close()
        db.unlink()

    prod_times = [timed_product() for _ in range(runs)]
    prod = statistics.median(prod_times)
    bare_t, _ = median_time(bare, runs)
    pd_t, _ = median_time(pandas_path, max(1, min(runs, 2)))
    code = (
        "from analytics import store\nfrom analytics.ingest import import_file\n"
        f"con = store.connect(r'{workdir / 'rss.duckdb'}')\n"
        f"import_file(con, 'sirene', r'{sirene_path}')\nimport_file(con, 'mandats', r'{csv_path}')\n"
    )
    rss, _ = child_peak_rss(code)
    (workdir / "rss.duckdb").unlink(missing_ok=True)
    return {
        "lines": lines,
        "mb": mb,
        "product_s": prod,
        "product_runs": prod_times,
        "bare_s": bare_t,
        "pandas_s": pd_t,
        "lines_per_s": lines / prod,
        "mb_per_s": mb / prod,
        "ratio_vs_bare": prod / bare_t,
        "speedup_vs_pandas": pd_t / prod,
        "peak_rss_mb": rss,
        "db": str(keep),
    }


def build_history(db: Path, sirene_path: Path, workdir: Path, total: int, years: int) -> dict:
    """A buyer's ``years`` exercices of ``total // years`` lines each, exported and imported
    one after another as an analyst does (each import deduplicates against all before it).
    Returns the time of each import: the last shows what a large database costs an import."""
    from analytics import store
    from analytics.ingest import import_file

    con = store.connect(db)
    import_file(con, "sirene", sirene_path)
    out = []
    for year in range(2026 - years, 2026):
        csv_path = workdir / f"hist_{year}.csv"
        write_mandats(csv_path, total // years, year=year)
        t0 = time.perf_counter()
        r = import_file(con, "mandats", csv_path)
        out.append({"year": year, "lines": r.rows_loaded, "seconds": time.perf_counter() - t0})
        print(f"  exercice {year}: {out[-1]['seconds']:.1f} s", flush=True)
        csv_path.unlink()
    con.close()
    return {"lines": total, "years": years, "imports": out}


PAGES = (
    "vue_ensemble", "spaser", "revue", "territoire", "economie", "ess_inclusion",
    "fournisseurs", "sourcing", "leviers", "import_donnees", "methodes",
)  # fmt: skip


# A small payment export of the latest year, imported on the Import page by the page
# benchmark's third round.
SMALL_IMPORT = (
    "Exercice;N° mandat;Date de paiement;SIRET fournisseur;Nom fournisseur;Montant TTC;Nature\n"
    "2025;900001;15/12/2025;35600000000048;LA POSTE;1 234,50;6261\n"
    "2025;900002;16/12/2025;55208131766522;EDF;800,00;60612\n"
)


def bench_pages(db_file: Path, workdir: Path) -> dict:
    """Server-side run time of every page under streamlit's AppTest, in a fresh process:
    first visit (empty caches: every query runs), second visit (cached), with the default
    filters (latest year); then an analyst imports a small file on the Import page, the
    dashboard computes the recent results again in the background (cached.warm), and
    every page is visited a third time. Then a restart: a second fresh process opens the
    first page, which starts computing again in the background the results the first
    process served (kept next to the database, cached.resume); once done, every page is
    visited. Python imports, and the scan of the installed packages for components that a
    server does when it starts, are done before the clock; so is Streamlit's one-off check
    for an interactive shell outside a server (0.13 s), which `streamlit run` never makes.
    The pages run on a copy of the database (the import writes)."""
    import shutil

    roles = workdir / "no_roles.toml"
    copy = workdir / "pages_copy.duckdb"
    shutil.copy(db_file, copy)
    db_file = copy
    start = f"""
import json, os, threading, time
os.environ["EMPREINTE_DB"] = r"{db_file}"
os.environ["EMPREINTE_ROLES"] = r"{roles}"
os.environ.pop("EMPREINTE_ROLE", None)
import plotly.express, streamlit
import streamlit.emojis, pandas.io.formats.style  # imported lazily by the first page (0.6 s, 0.3 s)
from streamlit.testing.v1 import AppTest
from analytics import cached, charts, indicators, levers, spaser, footprint, review  # noqa
pages = {list(PAGES)!r}
at = AppTest.from_file(r"{ROOT / "dashboard.py"}", default_timeout=900)
try:  # a server scans the installed packages for components when it starts
    # (streamlit/runtime/runtime.py); AppTest does it in its first run: done here, before the clock
    from streamlit.components.v2.component_manager import BidiComponentManager
    _components = BidiComponentManager()
    _components.discover_and_register_components(start_file_watching=False)
    at._bidi_component_manager = _components
except Exception:
    pass
# Outside a server, Streamlit's first element checks once whether it runs in a REPL, by
# reading the source of every frame on the stack (inspect.stack: 0.13 s on the first page);
# `streamlit run` never does. Marked as done here, before the clock.
import streamlit.delta_generator
streamlit.delta_generator._use_warning_has_been_displayed = True


def wait_warm():
    t0 = time.perf_counter()
    while any(t.name == "empreinte-warm" for t in threading.enumerate()):
        time.sleep(0.05)
    return time.perf_counter() - t0
"""
    code = (
        start
        + f"""
out = {{"first": {{}}, "second": {{}}, "exceptions": {{}}}}
for rnd in ("first", "second"):
    for i, page in enumerate(pages):
        t0 = time.perf_counter()
        if rnd == "first" and i == 0:
            at.run()
        else:
            at.switch_page(f"pages/{{page}}.py").run()
        out[rnd][page] = time.perf_counter() - t0
        if at.exception:
            out["exceptions"][page] = [str(e.value)[:200] for e in at.exception]
at.switch_page("pages/import_donnees.py").run()
at.selectbox(key="imp_kind").set_value("mandats")
at.file_uploader(key="imp_file").set_value(("petit.csv", {SMALL_IMPORT.encode("utf-8")!r}, "text/csv"))
at.run()
t0 = time.perf_counter()
at.button(key="imp_commit").click().run()
out["import_s"] = time.perf_counter() - t0
out["import_ok"] = any("enregistré" in m.value for m in at.success)
out["warm_s"] = wait_warm()
out["after_import"] = {{}}
for page in pages:
    t0 = time.perf_counter()
    at.switch_page(f"pages/{{page}}.py").run()
    out["after_import"][page] = time.perf_counter() - t0
print(json.dumps(out))
"""
    )
    restart = (
        start
        + """
out = {"restart": {}}
t0 = time.perf_counter()
at.run()
out["restart_first_page_s"] = time.perf_counter() - t0
out["restart_warm_s"] = wait_warm()
for i, page in enumerate(pages):
    t0 = time.perf_counter()
    at.switch_page(f"pages/{page}.py").run()
    out["restart"][page] = time.perf_counter() - t0
print(json.dumps(out))
"""
    )
    try:
        rss, stdout = child_peak_rss(code)
        res = json.loads(stdout.strip().splitlines()[-1])
        res["peak_rss_mb"] = rss
        _, stdout = child_peak_rss(restart)
        res.update(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        copy.unlink(missing_ok=True)
        Path(str(copy) + ".recent.json").unlink(missing_ok=True)
    return res


def bench_decp(db_file: Path, workdir: Path, years: list[int], per_year: int, label: str) -> dict:
    """Import the contracts of ``years`` (official flat CSV) into a query database: the
    pages read them (SPASER, ESS, Revue, Leviers), as on a real buyer's database."""
    from analytics import store
    from analytics.ingest import import_file

    path = workdir / f"decp_{per_year}_{len(years)}.csv"
    gen = write_decp(path, years, per_year)
    con = store.connect(db_file)
    t0 = time.perf_counter()
    r = import_file(con, "decp", path)
    seconds = time.perf_counter() - t0
    con.close()
    path.unlink()
    return {
        "label": label,
        "contracts": gen["contracts"],
        "years": len(years),
        "seconds": seconds,
        "loaded": r.rows_loaded,
        "rejected": r.rows_rejected,
    }


def bench_sirene(db_file: Path, workdir: Path, rows: int = 1_000_000) -> dict:
    """Import + classification of a 1M-row StockEtablissement extract into a database
    that already holds 1M payment lines (so every paid supplier is classified again)."""
    import shutil

    from analytics import store
    from analytics.ingest import import_file

    big = workdir / "sirene_1m.csv"
    write_sirene(big, rows, seed=7)
    copy = workdir / "sirene_bench.duckdb"
    shutil.copy(db_file, copy)
    con = store.connect(copy)
    t0 = time.perf_counter()
    r = import_file(con, "sirene", big)
    seconds = time.perf_counter() - t0
    classified = con.execute("SELECT count(*) FROM supplier_class").fetchone()[0]
    con.close()
    copy.unlink()
    big.unlink()
    return {"rows": r.rows_loaded, "seconds": seconds, "suppliers_classified": classified}


def bench_queries(db_file: Path, runs: int) -> dict:
    """Cold (fresh process) and warm (same connection, cached) headline; each breakdown."""
    from analytics import indicators, store
    from analytics.filters import Filters, Territory

    f = Filters.year(2025, territory=Territory("dep", ("59",)))
    cold_code = (
        "import time\nfrom analytics import store, indicators\n"
        "from analytics.filters import Filters, Territory\n"
        f"con = store.connect(r'{db_file}', read_only=True)\n"
        "t0 = time.perf_counter()\n"
        "indicators.headline(con, Filters.year(2025, territory=Territory('dep', ('59',))))\n"
        "print(time.perf_counter() - t0)\n"
    )
    cold = []
    for _ in range(runs):
        rss, out = child_peak_rss(cold_code)
        cold.append(float(out.strip().splitlines()[-1]))
    con = store.connect(db_file, read_only=True)
    indicators.headline(con, f)
    warm_uncached, _ = median_time(lambda: indicators.headline(con, f), runs)
    cache: dict = {}

    def cached():
        key = (f, store.data_version(con))
        if key not in cache:
            cache[key] = indicators.headline(con, f)
        return cache[key]

    cached()
    warm_cached, _ = median_time(cached, runs)
    breakdowns = {}
    for name in (
        "spend_by_departement",
        "spend_by_region",
        "spend_by_epci",
        "spend_by_commune",
        "spend_by_size",
        "spend_by_naf_section",
        "spend_by_category",
        "spend_by_inclusive_kind",
        "monthly_series",
        "lorenz_curve",
        "top_suppliers",
        "distance_distribution",
        "local_share_by_category",
        "payment_delays",
    ):
        fn = getattr(indicators, name, None)
        if fn is None:
            continue
        t, _ = median_time(lambda fn=fn: fn(con, f), runs)
        breakdowns[name] = t
    con.close()
    return {
        "headline_cold_s": statistics.median(cold),
        "headline_warm_s": warm_uncached,
        "headline_cached_s": warm_cached,
        "breakdowns_s": breakdowns,
        "query_peak_rss_mb": rss,
    }


def bench_figures(db_file: Path) -> dict:
    """Size (MB of plotly JSON) of the figures the pages send, on a benchmark database.

    Maps are measured both with the geometry inlined (the worst case) and as the
    dashboard sends them (geometry served once as a static file, the figure carries its URL).
    """
    from analytics import charts, indicators, store
    from analytics.filters import Filters, Territory

    t = Territory("dep", ("59",))
    f = Filters.year(2025, territory=t)
    con = store.connect(db_file, read_only=True)
    figs = {
        "carte départements (géométrie incluse)": charts.departement_map(
            indicators.spend_by_departement(con, f), t
        ),
        "carte régions (géométrie incluse)": charts.departement_map(
            indicators.spend_by_region(con, f), t, level="region"
        ),
        "carte communes du Nord (géométrie incluse)": charts.commune_map(
            indicators.spend_by_commune(con, f), "59", t
        ),
        "évolution mensuelle": charts.monthly(indicators.monthly_series(con, f)),
        "courbe de Lorenz": charts.lorenz(
            indicators.lorenz_curve(con, f), x="cum_suppliers_share", y="cum_spend_share"
        ),
        "premiers fournisseurs": charts.bar_h(indicators.top_suppliers(con, f), "name", "amount"),
    }
    con.close()
    return {name: len(fig.to_json().encode()) / 1e6 for name, fig in figs.items()}


def _status(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def targets(results: dict) -> list[tuple[str, str, str]]:
    """(target, measured, status) for every target of the performance issue."""
    imp = {r["lines"]: r for r in results["imports"]}
    big = [imp[n] for n in sorted(imp) if n >= 1_000_000]
    rows = []
    if big:
        rows.append(
            (
                "import ≥ 500,000 lines/s at 1M and 10M",
                ", ".join(f"{r['lines_per_s']:,.0f} lines/s ({r['lines']:,})" for r in big),
                _status(all(r["lines_per_s"] >= 500_000 for r in big)),
            )
        )
        rows.append(
            (
                "within 3× of the bare DuckDB read",
                ", ".join(f"{r['ratio_vs_bare']:.2f}×" for r in big),
                _status(all(r["ratio_vs_bare"] <= 3 for r in big)),
            )
        )
        rows.append(
            (
                "≥ 3× faster than pandas read_csv + load",
                ", ".join(f"{r['speedup_vs_pandas']:.2f}×" for r in big),
                _status(all(r["speedup_vs_pandas"] >= 3 for r in big)),
            )
        )
    if 10_000_000 in imp:
        r = imp[10_000_000]
        rows.append(("10M lines imported in < 30 s", f"{r['product_s']:.0f} s", _status(r["product_s"] < 30)))
        rows.append(
            (
                "10M-line import peak memory < 2 GB",
                f"{r['peak_rss_mb']:,.0f} MB",
                _status(r["peak_rss_mb"] < 2048),
            )
        )
    for q in results["queries"]:
        limit = 1.0 if q["lines"] <= 1_000_000 else 3.0
        rows.append(
            (
                f"headline cold < {limit:.0f} s ({q['label']})",
                f"{q['headline_cold_s']:.2f} s",
                _status(q["headline_cold_s"] < limit),
            )
        )
    cached = [q["headline_cached_s"] for q in results["queries"]]
    if cached:
        rows.append(
            ("headline cached < 100 ms", f"{max(cached) * 1000:.1f} ms at most", _status(max(cached) < 0.1))
        )
    for q in results["queries"]:
        if q["lines"] < 10_000_000 or not q["breakdowns_s"]:
            continue
        over = {k: v for k, v in q["breakdowns_s"].items() if v >= 0.5}
        worst = max(q["breakdowns_s"].items(), key=lambda kv: kv[1])
        rows.append(
            (
                f"any breakdown < 500 ms ({q['label']})",
                f"slowest {worst[1]:.2f} s ({worst[0]}); {len(over)} of {len(q['breakdowns_s'])} over",
                _status(not over),
            )
        )
    if results.get("figures"):
        worst = max(results["figures"].values())
        rows.append(("every figure < 5 MB", f"largest {worst:.2f} MB", _status(worst < 5)))
    for pg in results.get("pages", []):
        first = max(pg["first"].items(), key=lambda kv: kv[1])
        rows.append(
            (
                f"a page runs (AppTest) < 1.5 s ({pg['label']}), first visit",
                f"slowest {first[1]:.2f} s ({first[0]}); "
                f"{sum(v >= 1.5 for v in pg['first'].values())} of {len(pg['first'])} over",
                _status(first[1] < 1.5),
            )
        )
        for key, when in (("second", "cached"), ("after_import", "after an import (warmed)")):
            if pg.get(key):
                slowest = max(pg[key].items(), key=lambda kv: kv[1])
                rows.append(
                    (
                        f"a page runs (AppTest) < 1.5 s ({pg['label']}), {when}",
                        f"slowest {slowest[1]:.2f} s ({slowest[0]})",
                        _status(slowest[1] < 1.5),
                    )
                )
        if pg.get("restart"):
            again = max(pg["restart"].items(), key=lambda kv: kv[1])
            rows.append(
                (
                    f"a page runs (AppTest) < 1.5 s ({pg['label']}), after a restart",
                    f"first page {pg['restart_first_page_s']:.2f} s; then, warmed in "
                    f"{pg['restart_warm_s']:.1f} s, slowest {again[1]:.2f} s ({again[0]})",
                    _status(max(again[1], pg["restart_first_page_s"]) < 1.5),
                )
            )
    return rows


def write_markdown(results: dict, path: Path) -> None:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Date: {results['date']} ({results.get('started', '')}–{results.get('finished', '')} UTC) · "
        f"machine: {m['cpus']} cores, {m['ram_gb']:.0f} GB RAM, "
        f"{m['platform']} · Python {m['python']} · DuckDB {m['duckdb']} · pandas {m['pandas']}"
        + (f" · commit {results['commit']}" if results.get("commit") else ""),
        "",
        f"Command: `{results['command']}` (`make bench` runs it) · each figure is the median of "
        f"{results['runs']} runs in one process run (ratios are the fair comparison; machines are "
        "noisy). Written by `benchmarks/run.py`; the reading at the end is `benchmarks/notes.md`.",
        "",
        "## Targets",
        "",
        "| target | measured | status |",
        "|---|---|---|",
        *(f"| {t} | {v} | {st} |" for t, v, st in targets(results)),
        "",
        "## Import of one mandats export (Windows-1252, `;`, decimal comma, NBSP thousands, 16 columns)",
        "",
        "| lines | MB | product (s) | lines/s | MB/s | bare DuckDB read_csv (s) | product / bare | "
        "pandas read_csv + load (s) | pandas / product | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["imports"]:
        lines.append(
            f"| {r['lines']:,} | {r['mb']:.0f} | {r['product_s']:.2f} | {r['lines_per_s']:,.0f} | "
            f"{r['mb_per_s']:.1f} | {r['bare_s']:.2f} | {r['ratio_vs_bare']:.2f}× | {r['pandas_s']:.2f} | "
            f"{r['speedup_vs_pandas']:.2f}× | {r['peak_rss_mb']:.0f} |"
        )
    lines += [
        "",
        "The product's import includes transcoding, parsing, validation (SIRET Luhn in SQL, "
        "tested equal to python-stdnum), deduplication against the database, classification "
        "of the suppliers it touches and the commit, in one transaction. Bare: Python "
        "transcoding to UTF-8, then `CREATE TABLE AS SELECT * FROM read_csv(…, all_varchar)`. "
        "Peak RSS: `VmHWM` of a fresh process importing the file.",
    ]
    hist = results.get("history")
    if hist:
        lines += [
            "",
            f"## Ten years of payments: {hist['years']} yearly exports of "
            f"{hist['lines'] // hist['years']:,} lines imported one after another",
            "",
            "| exercice | lines | import (s) |",
            "|---|---|---|",
            *(f"| {r['year']} | {r['lines']:,} | {r['seconds']:.2f} |" for r in hist["imports"]),
        ]
    if results.get("decp"):
        lines += [
            "",
            "## Contracts (DECP, official flat CSV) imported into each query database",
            "",
            "The indicators and pages below are measured with these contracts in the database.",
            "",
            "| database | contracts | years | import (s) | contracts/s | rejected |",
            "|---|---|---|---|---|---|",
            *(
                f"| {d['label']} | {d['contracts']:,} | {d['years']} | {d['seconds']:.2f} | "
                f"{d['contracts'] / d['seconds']:,.0f} | {d['rejected']} |"
                for d in results["decp"]
            ),
        ]
    if results.get("sirene"):
        sr = results["sirene"]
        lines += [
            "",
            "## SIRENE extract (StockEtablissement, 13 columns) import and classification",
            "",
            f"{sr['rows']:,} rows imported and {sr['suppliers_classified']:,} paid suppliers "
            f"classified again in {sr['seconds']:.1f} s (target: under a minute).",
        ]
    lines += [
        "",
        "## Indicators (year 2025, territory dep:59)",
        "",
        "| database | headline cold (s) | headline warm, uncached (s) | headline cached (ms) | "
        "slowest breakdown (s) | peak RSS (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for q in results["queries"]:
        slowest = max(q["breakdowns_s"].items(), key=lambda kv: kv[1]) if q["breakdowns_s"] else ("-", 0)
        lines.append(
            f"| {q['label']} | {q['headline_cold_s']:.2f} | {q['headline_warm_s']:.2f} | "
            f"{q['headline_cached_s'] * 1000:.2f} | {slowest[1]:.3f} ({slowest[0]}) | "
            f"{q['query_peak_rss_mb']:.0f} |"
        )
    lines += ["", "Breakdowns (s):", ""]
    for q in results["queries"]:
        lines.append(f"- {q['label']}: " + ", ".join(f"{k} {v:.3f}" for k, v in q["breakdowns_s"].items()))
    for pg in results.get("pages", []):
        lines += [
            "",
            f"## Dashboard pages under AppTest, server side ({pg['label']})",
            "",
            "Default filters (latest year, whole territory). First visit: empty caches, every "
            "query runs; second visit: the same page again (results cached by data version). "
            f"Peak RSS of the process: {pg['peak_rss_mb']:,.0f} MB.",
            "",
            "| page | first visit (s) | second visit (s) | after an import, warmed (s) | after a restart, warmed (s) |",
            "|---|---|---|---|---|",
            *(
                f"| {k} | {v:.2f} | {pg['second'][k]:.2f} | "
                + (f"{pg['after_import'][k]:.2f}" if k in pg.get("after_import", {}) else "–")
                + " | "
                + (f"{pg['restart'][k]:.2f}" if k in pg.get("restart", {}) else "–")
                + " |"
                for k, v in pg["first"].items()
            ),
        ]
        if "warm_s" in pg:
            lines += [
                "",
                f"Third column: an analyst imported a 2-line file on the Import page "
                f"({pg['import_s']:.1f} s, {'accepted' if pg.get('import_ok') else 'NOT accepted'}); "
                f"the dashboard then computed again the results it had served, in the background, "
                f"in {pg['warm_s']:.1f} s after the import returned; then every page was visited.",
            ]
        if "restart_first_page_s" in pg:
            lines += [
                "",
                "Fourth column: the server restarted (a second process on the same database). "
                f"Its first page took {pg['restart_first_page_s']:.2f} s (every query runs, as on a "
                "first visit); once it was drawn, the process computed again, in the background, the "
                "results the previous process had served (kept next to the database), in "
                f"{pg['restart_warm_s']:.1f} s; then every page was visited.",
            ]
        if pg.get("exceptions"):
            lines += ["", f"Exceptions: {pg['exceptions']}"]
    if results.get("figures"):
        lines += [
            "",
            f"## Figures sent to the browser ({results.get('figures_db', 'largest database')}, year 2025)",
            "",
            "| figure | MB |",
            "|---|---|",
        ]
        for k, v in results["figures"].items():
            lines.append(f"| {k} | {v:.2f} |")
    if results.get("notes"):
        lines += ["", "## Run notes", ""] + [f"- {n}" for n in results["notes"]]
    notes = ROOT / "benchmarks" / "notes.md"
    if notes.exists():
        lines += ["", notes.read_text(encoding="utf-8").strip()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    import pandas as pd
    import psutil

    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--years",
        type=int,
        default=10,
        help="the largest size is also built as this many yearly exports imported one after another",
    )
    p.add_argument("--no-pages", action="store_true", help="skip the AppTest page timings")
    p.add_argument(
        "--render",
        action="store_true",
        help="only write BENCHMARKS.md again from the --json results (after editing benchmarks/notes.md)",
    )
    p.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results.json"))
    a = p.parse_args()
    if a.render:
        write_markdown(json.loads(Path(a.json).read_text()), Path(a.out))
        print(f"written {a.out}")
        return
    sizes = sorted(int(s) for s in a.sizes.split(","))
    now = dt.datetime.now(dt.UTC)
    results = {
        "date": now.date().isoformat(),
        "started": now.strftime("%H:%M"),
        "command": "python benchmarks/run.py " + " ".join(sys.argv[1:]),
        "commit": _commit(),
        "runs": a.runs,
        "machine": {
            "cpus": os.cpu_count(),
            "ram_gb": psutil.virtual_memory().total / 2**30,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "pandas": pd.__version__,
        },
        "imports": [],
        "queries": [],
        "pages": [],
        "notes": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sirene = work / "sirene.csv"
        write_sirene(sirene)
        largest = max(sizes)
        query_dbs = []
        for n in sizes:
            csv_path = work / f"mandats_{n}.csv"
            gen = write_mandats(csv_path, n)
            print(f"generated {n:,} lines in {gen['seconds']:.1f} s", flush=True)
            runs = a.runs if n <= 1_000_000 else max(1, a.runs - 1)
            r = bench_import(csv_path, sirene, runs, work)
            print(json.dumps(r), flush=True)
            results["imports"].append(r)
            db = Path(r.pop("db"))
            csv_path.unlink()
            if n == 1_000_000:
                results["sirene"] = bench_sirene(db, work)
                print(json.dumps(results["sirene"]), flush=True)
            history = a.years > 1 and largest >= 1_000_000
            label = f"{n:,} lines in one year" + (" (stress)" if n == largest and history else "")
            query_dbs.append((label, n, db))
        if a.years > 1 and largest >= 1_000_000:
            hist_db = work / "history.duckdb"
            print(f"building {a.years} yearly exports of {largest // a.years:,} lines", flush=True)
            results["history"] = build_history(hist_db, sirene, work, largest, a.years)
            query_dbs.append((f"{largest:,} lines over {a.years} years", largest, hist_db))
        results["decp"] = []
        for label, n, db in query_dbs:
            per_year = max(
                100, DECP_PER_MILLION_LINES * n // 1_000_000 // (a.years if "years" in label else 1)
            )
            years = list(range(2025 - a.years + 1, 2026)) if "years" in label else [2025]
            d = bench_decp(db, work, years, per_year, label)
            print(json.dumps(d), flush=True)
            results["decp"].append(d)
        for label, n, db in query_dbs:
            q = bench_queries(db, a.runs)
            q.update(label=label, lines=n)
            print(json.dumps(q), flush=True)
            results["queries"].append(q)
        fig_label, _, fig_db = query_dbs[-1]
        try:
            results["figures"] = bench_figures(fig_db)
            results["figures_db"] = fig_label
        except Exception as exc:  # figures are a side measure; keep the run
            results["notes"].append(f"figure sizes not measured: {exc}")
        if not a.no_pages:
            for label, n, db in query_dbs:
                if n < min(1_000_000, largest) or (n == largest and label != fig_label):
                    continue
                try:
                    pg = bench_pages(db, work)
                except subprocess.CalledProcessError as exc:
                    results["notes"].append(f"page timings not measured on {label}: {exc.stderr[-300:]}")
                    continue
                pg["label"] = label
                print(json.dumps(pg), flush=True)
                results["pages"].append(pg)
    results["finished"] = dt.datetime.now(dt.UTC).strftime("%H:%M")
    Path(a.json).write_text(json.dumps(results, indent=2, default=str))
    write_markdown(results, Path(a.out))
    print(f"written {a.out}")


if __name__ == "__main__":
    main()
