"""analytics.cached: results keyed by the data version; after a write, the calls served
most recently are computed again for the new version in the background (warm)."""

from __future__ import annotations

import pytest

from analytics import auth, cached, indicators, store
from analytics.filters import Filters
from analytics.ingest import import_file

CSV = (
    "Exercice;N° mandat;Date de paiement;SIRET fournisseur;Nom fournisseur;Montant TTC;Nature\n"
    "2025;1;15/01/2025;35600000000048;LA POSTE;1 000,00;6261\n"
    "2025;2;20/02/2025;55208131766522;EDF;500,00;60612\n"
)
MORE = (
    "Exercice;N° mandat;Date de paiement;SIRET fournisseur;Nom fournisseur;Montant TTC;Nature\n"
    "2025;3;10/03/2025;35600000000048;LA POSTE;250,00;6261\n"
)


@pytest.fixture
def app_db(tmp_path, monkeypatch):
    db = tmp_path / "app.duckdb"
    (tmp_path / "a.csv").write_text(CSV, encoding="utf-8")
    (tmp_path / "b.csv").write_text(MORE, encoding="utf-8")
    con = store.connect(db)
    import_file(con, "mandats", tmp_path / "a.csv")
    con.close()
    monkeypatch.setenv("EMPREINTE_DB", str(db))
    monkeypatch.setattr(auth, "current_role", lambda: "analyst")
    version = {}

    def data_version(refresh: bool = False):  # session state stands in a plain dict here
        if refresh or "v" not in version:
            with cached.cursor() as cur:
                version["v"] = store.data_version(cur)
        return version["v"]

    monkeypatch.setattr(cached, "data_version", data_version)
    yield tmp_path
    cached._connection.clear()


def test_a_write_warms_the_recent_calls_for_the_new_version(app_db, monkeypatch):
    f = Filters.year(2025)
    engine_calls = []
    real = indicators.headline
    monkeypatch.setattr(indicators, "headline", lambda con, g: engine_calls.append(g) or real(con, g))
    threads = []
    real_warm = cached.warm
    monkeypatch.setattr(cached, "warm", lambda *a, **k: threads.append(real_warm(*a, **k)) or threads[-1])

    assert cached.call("indicators.headline", f)["total_spend"] == pytest.approx(1500.0)
    assert cached.call("indicators.headline", f)["total_spend"] == pytest.approx(1500.0)
    assert len(engine_calls) == 1  # the second answer came from the cache

    cached.write(lambda cur, who: import_file(cur, "mandats", app_db / "b.csv"))
    assert len(threads) == 1
    threads[0].join(timeout=60)
    assert not threads[0].is_alive()
    assert len(engine_calls) == 2  # computed again, in the background, for the new version
    assert cached.call("indicators.headline", f)["total_spend"] == pytest.approx(1750.0)
    assert len(engine_calls) == 2  # the visitor after the import is served from the cache


def test_warm_replays_only_this_databases_calls_and_stops_at_its_budget(app_db, monkeypatch):
    f = Filters.year(2025)
    cached.call("indicators.headline", f)
    cached.call("indicators.spend_by_departement", f)
    seen = []
    monkeypatch.setattr(cached, "_cached_call", lambda name, db, v, a, k: seen.append((name, db)))
    cached.warm("v-test", db="/elsewhere.duckdb").join(timeout=30)
    assert seen == []
    cached.warm("v-test").join(timeout=30)
    assert [n for n, _ in seen] == ["indicators.spend_by_departement", "indicators.headline"]
    seen.clear()
    cached.warm("v-test", seconds=-1).join(timeout=30)
    assert seen == []


def test_preload_loads_the_io_model_once_per_process_and_database(app_db, monkeypatch):
    from analytics import footprint

    loaded = []
    real = footprint.preload
    monkeypatch.setattr(footprint, "preload", lambda con: loaded.append(1) or real(con))
    cached._preloaded.clear()
    footprint._load.cache_clear()
    monkeypatch.setattr(cached, "_PAGE_DRAWN", __import__("threading").Event())
    thread = cached.preload()
    assert cached.preload() is thread  # the same thread: started once
    thread.join(0.3)
    assert thread.is_alive() and not loaded  # after the first page is drawn
    cached.page_drawn()
    thread.join(30)
    assert loaded == [1]
    assert footprint._load.cache_info().currsize == 1  # footprint() will find it loaded
    with cached.cursor() as cur:
        before = footprint._load.cache_info().hits
        footprint.footprint(cur, Filters.year(2025))
        assert footprint._load.cache_info().hits == before + 1
    cached._preloaded.clear()


def test_recent_calls_are_kept_across_a_restart_and_warmed_at_start(app_db, monkeypatch):
    import datetime as dt
    from collections import OrderedDict

    from analytics.filters import Territory
    from analytics.levers import ReservationRules

    monkeypatch.setattr(cached, "_RECENT", OrderedDict())
    f = Filters.year(2025, territory=Territory("dep", ("59", "62")))
    cached.call("indicators.headline", f)
    cached.call("indicators.top_suppliers", f, n=5)
    cached.call("indicators.headlines", (f, f.previous_year()), light=True)
    keys = list(cached._RECENT)
    assert cached.save_recent() and not cached.save_recent()  # written once: nothing new after
    # a key the JSON cannot hold (another type of argument) is left out, the rest is kept
    cached._RECENT[(cached.db_file(), "indicators.headline", (object(),), ())] = None
    cached._RECENT_NEW.set()
    assert cached.save_recent()
    saved = cached.recent_file().read_text(encoding="utf-8")
    assert "object" not in saved and '"$Territory"' in saved

    # the next process: its own empty list, filled from the file
    monkeypatch.setattr(cached, "_RECENT", OrderedDict())
    assert cached.load_recent() == 3
    assert list(cached._RECENT) == keys
    assert cached._decode(
        cached._encode(ReservationRules(large_single_lot=1.0), cached._classes()), cached._classes()
    ) == (ReservationRules(large_single_lot=1.0))
    assert cached._decode({"$date": "2025-03-01"}, cached._classes()) == dt.date(2025, 3, 1)

    # warmed at start: the first visitor's call is served from the cache
    engine_calls = []
    real = indicators.top_suppliers
    monkeypatch.setattr(
        indicators, "top_suppliers", lambda con, g, **k: engine_calls.append(g) or real(con, g, **k)
    )
    cached._cached_call.clear()
    cached._resumed.clear()
    monkeypatch.setattr(cached, "_PAGE_DRAWN", __import__("threading").Event())
    thread = cached.resume()
    assert thread is not None and cached.resume() is thread  # once per process and database
    thread.join(0.5)
    assert thread.is_alive() and not engine_calls  # it waits for the first page to be drawn
    cached.page_drawn()
    thread.join(60)
    assert len(engine_calls) == 1
    assert len(cached.call("indicators.top_suppliers", f, n=5)) == 2
    assert len(engine_calls) == 1
    cached._resumed.clear()


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"version": 1, "calls": [{"name": "os.system", "args": {"$tuple": ["ls"]}, "kwargs": {"$tuple": []}}]}',
        '{"version": 1, "calls": [{"name": "indicators.headline", "args": {"$Popen": {"args": "ls"}},'
        ' "kwargs": {"$tuple": []}}]}',
        '{"version": 1, "calls": [{"name": "indicators.headline", "args": {"$tuple": [{"$Filters":'
        ' {"date_from": {"$date": "2025-01-01"}, "date_to": {"$date": "2025-12-31"}, "evil": 1}}]},'
        ' "kwargs": {"$tuple": []}}]}',
        '{"version": 1, "calls": [{"name": "indicators._run", "args": {"$tuple": []}, "kwargs": {"$tuple": []}}]}',
        '{"version": 2, "calls": []}',
        '{"version": 1, "calls": [{"name": "indicators.headline", "args": ["a"], "kwargs": {"$tuple": []}}]}',
    ],
    ids=["not-json", "module", "class", "field", "private", "version", "list"],
)
def test_a_damaged_or_foreign_recent_file_is_ignored(app_db, monkeypatch, content):
    from collections import OrderedDict

    monkeypatch.setattr(cached, "_RECENT", OrderedDict())
    cached.recent_file().write_text(content, encoding="utf-8")
    assert cached.load_recent() == 0 and not cached._RECENT


def test_cursors_name_the_reference_views_of_the_shared_connection(app_db):
    """The dashboard's connection keeps the ref_* views once (an attached in-memory
    database); every cursor names them, and reads what a cursor with its own temporary
    views reads. A write through a cursor still goes to the database file."""
    con, shared = cached._connection(cached.db_file())
    assert shared
    sql = "SELECT count(*), count(DISTINCT code_departement) FROM ref_communes"
    with cached.cursor() as cur:
        via_shared = cur.execute(sql).fetchone()
        cur.execute("CREATE TABLE written_here AS SELECT 1 AS x")
    own = con.cursor()
    store.attach_reference(own)
    assert via_shared == own.execute(sql).fetchone() and via_shared[0] > 30_000
    assert (
        own.execute("SELECT database_name FROM duckdb_tables() WHERE table_name = 'written_here'").fetchone()[
            0
        ]
        == own.execute("SELECT current_database()").fetchone()[0]
    )
    own.close()


def test_a_read_only_connection_keeps_per_cursor_reference_views(tmp_path):
    db = tmp_path / "ro.duckdb"
    store.connect(db).close()
    con = store.connect(db, read_only=True)
    assert not store.share_reference(con)  # cannot attach: cursors create their own views
    con.close()
