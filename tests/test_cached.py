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
