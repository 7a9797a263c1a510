"""Every page under streamlit's AppTest, on the demo database and on an empty one; the
year filter; the import flow (upload → preview → commit → undo) driven by widget keys;
a reader cannot import when login is on."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from analytics.fmt import fmt_eur

ROOT = Path(__file__).resolve().parent.parent
PAGES = {
    "vue_ensemble": "Dépense totale",
    "spaser": None,
    "revue": None,
    "territoire": "Part locale",
    "economie": "Part PME (dont TPE)",
    "ess_inclusion": "Part ESS",
    "fournisseurs": None,
    "sourcing": None,
    "import_donnees": None,
    "methodes": "Lignes rejetées à l'import",
}
TIMEOUT = 180

MANDATS_CSV = (
    "Exercice;N° mandat;Date de paiement;SIRET fournisseur;Nom fournisseur;Montant TTC;Nature;Service\n"
    "2025;1;15/01/2025;35600000000048;LA POSTE;1 234,50;6261;Direction générale\n"
    '2025;2;20/02/2025;;=HYPERLINK("x");500,00;6068;Voirie\n'
    "2025;3;pas une date;35600000000048;LA POSTE;100,00;6261;Direction générale\n"
    "2025;4;10/03/2025;55208131766522;EDF;-50,00;60612;Bâtiments\n"
)
# Loaded: 1 234,50 + 500,00 − 50,00 (credit note) = 1 684,50 €; line 4 of the file rejected (date).
MANDATS_TOTAL = 1234.50 + 500.00 - 50.00


def demo_database(tmp_path_factory) -> Path:
    """The demo database, built once per test session (shared with test_browser);
    ``EMPREINTE_TEST_DEMO_DB`` names a prebuilt one to reuse (never written to)."""
    from analytics import demo

    prebuilt = os.environ.get("EMPREINTE_TEST_DEMO_DB")
    if prebuilt and Path(prebuilt).exists():
        return Path(prebuilt)

    folder = tmp_path_factory.getbasetemp() / "demo_shared"
    folder.mkdir(exist_ok=True)
    path = folder / "demo.duckdb"
    if not path.exists():
        demo.build(path, force=True)
    return path


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    return demo_database(tmp_path_factory)


@pytest.fixture
def use_db(monkeypatch, tmp_path):
    """Point the app at a database file (a copy when asked) and keep login off."""
    monkeypatch.delenv("EMPREINTE_ROLE", raising=False)
    monkeypatch.setenv("EMPREINTE_ROLES", str(tmp_path / "no_roles.toml"))

    def _use(path: Path | None = None, copy: bool = False) -> Path:
        target = tmp_path / "app.duckdb"
        if path is not None and copy:
            shutil.copy(path, target)
            path = target
        path = path or target
        monkeypatch.setenv("EMPREINTE_DB", str(path))
        return path

    return _use


def app() -> AppTest:
    return AppTest.from_file("../dashboard.py", default_timeout=TIMEOUT).run()


def assert_clean(at: AppTest, where: str) -> None:
    assert not at.exception, f"{where}: {[e.value for e in at.exception]}"
    assert not at.error, f"{where}: {[e.value for e in at.error]}"


def metric(at: AppTest, label: str) -> str:
    for m in at.metric:
        if m.label == label:
            return m.value
    raise AssertionError(f"pas de carte « {label} » : {[m.label for m in at.metric]}")


@pytest.mark.parametrize("db_kind", ["demo", "empty"])
def test_every_page_renders(db_kind, demo_db, use_db):
    use_db(demo_db if db_kind == "demo" else None)
    at = app()
    assert_clean(at, "cadre")
    for page, key_figure in PAGES.items():
        at.switch_page(f"pages/{page}.py").run()
        if page == "revue":  # its alerts are st.error by design
            assert not at.exception, [e.value for e in at.exception]
        else:
            assert_clean(at, page)
        assert at.title, f"{page}: pas de titre"
        if db_kind == "demo" and key_figure:
            assert metric(at, key_figure) != "non disponible", page
        if db_kind == "empty" and page == "vue_ensemble":
            assert "Importez vos mandats" in at.info[0].value


def test_demo_key_figures(demo_db, use_db):
    use_db(demo_db)
    at = app()
    assert metric(at, "Dépense totale").endswith("€")
    for label in ("Part locale", "Part ESS", "Part inclusive"):
        assert metric(at, label).endswith("%")
    at.switch_page("pages/spaser.py").run()
    assert any("badge[" in m.value for m in at.markdown), "aucun statut SPASER"
    at.switch_page("pages/territoire.py").run()
    assert at.get("plotly_chart"), "pas de carte"


def test_year_filter_changes_total(demo_db, use_db):
    use_db(demo_db)
    at = app()
    years = at.selectbox(key="f_year").options
    assert len(years) >= 2
    first = metric(at, "Dépense totale")
    at.selectbox(key="f_year").set_value(int(years[1])).run()
    assert_clean(at, "année précédente")
    second = metric(at, "Dépense totale")
    assert first != second
    # The sidebar states the period chosen.
    assert f"01/01/{years[1]}" in at.sidebar.caption[0].value
    # A month range instead of a year.
    at.radio(key="f_mode").set_value("Mois").run()
    assert_clean(at, "plage de mois")
    months = at.select_slider(key="f_months").value
    assert len(months) == 2 and months[0] < months[1]
    assert metric(at, "Dépense totale") not in (first, second)


def test_basis_switch(demo_db, use_db):
    use_db(demo_db)
    at = app()
    paid = metric(at, "Dépense totale")
    at.radio(key="f_basis").set_value("notified").run()
    assert_clean(at, "base notifiée")
    assert metric(at, "Dépense totale") != paid


def _upload(at: AppTest, name: str = "mandats.csv", data: str = MANDATS_CSV) -> AppTest:
    at.selectbox(key="imp_kind").set_value("mandats")
    at.file_uploader(key="imp_file").set_value((name, data.encode("utf-8"), "text/csv"))
    return at.run()


def _count(path: Path, table: str) -> int:
    con = duckdb.connect(str(path), read_only=False)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def test_import_preview_commit_undo(use_db):
    use_db()
    at = app()
    at.switch_page("pages/import_donnees.py").run()
    assert_clean(at, "import")
    _upload(at)
    assert_clean(at, "aperçu")
    # Preview: 4 lines read, 3 to load, 1 rejected (unreadable date), nothing written yet.
    assert metric(at, "Lignes lues") == "4"
    assert metric(at, "Lignes à charger") == "3"
    assert metric(at, "Lignes rejetées") == "1"
    assert any("séparateur « ; »" in m.value for m in at.markdown)
    assert at.session_state["imp_preview"]["rejected"]["line_number"].tolist() == [4]
    assert not at.sidebar.caption[1].value.startswith("**Données** : import")

    at.button(key="imp_commit").click().run()
    assert_clean(at, "commit")
    assert "Import n° 1 enregistré : 3 lignes chargées" in at.success[0].value
    assert "import n° 1 (mandats, mandats.csv)" in at.sidebar.caption[1].value

    at.selectbox(key="f_year").set_value(2025)
    at.switch_page("pages/vue_ensemble.py").run()
    assert_clean(at, "vue après import")
    assert metric(at, "Dépense totale") == fmt_eur(MANDATS_TOTAL)
    # LA POSTE and the name-only supplier; EDF only has a credit note (no positive payment).
    assert metric(at, "Nombre de fournisseurs") == "2"

    at.switch_page("pages/import_donnees.py").run()
    at.button(key="imp_undo").click().run()
    assert_clean(at, "annulation")
    assert "Import n° 1 annulé" in at.success[0].value
    at.switch_page("pages/vue_ensemble.py").run()
    assert not at.metric  # nothing left: the empty state again
    assert "Importez vos mandats" in at.info[0].value


def test_same_file_twice_is_refused(use_db):
    use_db()
    at = app()
    at.switch_page("pages/import_donnees.py").run()
    _upload(at)
    at.button(key="imp_commit").click().run()
    at = app()
    at.switch_page("pages/import_donnees.py").run()
    _upload(at, name="copie.csv")
    assert any("déjà été importé" in w.value for w in at.warning)


def test_mapping_is_editable(use_db):
    """Mapping the 'Service' column to nothing: the preview is re-read without it."""
    use_db()
    at = app()
    at.switch_page("pages/import_donnees.py").run()
    _upload(at)
    assert "service" in at.session_state["imp_preview"]["sample"].columns
    editor_key = next(k for k in at.session_state if str(k).startswith("imp_map_editor_"))
    file_id = editor_key.removeprefix("imp_map_editor_").removesuffix("_mandats")
    at.session_state[f"imp_mapping_{file_id}_mandats"] = {"Service": "ignorer"}
    at.run()
    assert_clean(at, "correspondance")
    assert "service" not in at.session_state["imp_preview"]["sample"].columns


SECRETS = {
    "auth": {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "x",
        "client_id": "x",
        "client_secret": "x",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
    }
}


def _login(at: AppTest, email: str) -> AppTest:
    at.secrets = SECRETS
    at.user = {"is_logged_in": True, "email": email}
    return at


def test_reader_cannot_import(use_db, tmp_path, monkeypatch):
    db = use_db()
    roles = tmp_path / "roles.toml"
    roles.write_text(
        '[roles]\n"analyste@ville.fr" = "analyst"\n"elu@ville.fr" = "reader"\n', encoding="utf-8"
    )
    monkeypatch.setenv("EMPREINTE_ROLES", str(roles))

    # A reader reaches the Import page but gets no uploader, no undo, and a refusal.
    at = _login(AppTest.from_file("../dashboard.py", default_timeout=TIMEOUT), "elu@ville.fr").run()
    assert_clean(at, "lecteur")
    at.switch_page("pages/import_donnees.py").run()
    assert not at.exception
    assert "réservés aux analystes" in at.warning[0].value
    assert not at.file_uploader
    assert not [b for b in at.button if b.key in ("imp_commit", "imp_undo")]

    # Server-side check: an analyst stages a file, then the session loses its analyst
    # role (roles file edited); the commit click is refused by the handler itself.
    at = _login(AppTest.from_file("../dashboard.py", default_timeout=TIMEOUT), "analyste@ville.fr").run()
    at.switch_page("pages/import_donnees.py").run()
    _upload(at)
    assert metric(at, "Lignes à charger") == "3"
    roles.write_text('[roles]\n"analyste@ville.fr" = "reader"\n', encoding="utf-8")
    at.button(key="imp_commit").click().run()
    assert not at.exception
    assert any("réservée aux analystes" in e.value for e in at.error)
    assert _count(db, "mandats") == 0
    assert _count(db, "imports") == 0


def test_targets_editable_by_analyst_only(demo_db, use_db, monkeypatch):
    use_db(demo_db)
    at = app()
    at.switch_page("pages/spaser.py").run()
    assert_clean(at, "spaser analyste")
    assert [e for e in at.data_editor if e.key == "spaser_targets"]
    monkeypatch.setenv("EMPREINTE_ROLE", "reader")
    at = app()
    at.switch_page("pages/spaser.py").run()
    assert_clean(at, "spaser lecteur")
    assert not at.data_editor


def test_no_figure_over_5_mb(demo_db):
    from analytics import charts, indicators, store
    from analytics.filters import Filters

    con = store.connect(demo_db)  # the same configuration as the app's cached connection
    try:
        years = [
            r[0] for r in con.execute("SELECT DISTINCT year(spend_date) FROM mandats ORDER BY 1").fetchall()
        ]
        f = Filters.year(years[-2])
        from analytics import referential

        t = referential.default_territory(con)
        f = f.with_(territory=t)
        figs = [
            charts.departement_map(indicators.spend_by_departement(con, f).dropna(subset=["code"]), t),
            charts.departement_map(
                indicators.spend_by_region(con, f).dropna(subset=["code"]), t, level="region"
            ),
            charts.commune_map(
                indicators.spend_by_commune(con, f).dropna(subset=["code"]),
                t.codes[0] if t and t.kind == "dep" else "59",
                t,
            ),
        ]
    finally:
        con.close()
    for fig in figs:
        assert charts.figure_size(fig) < 5 * 1024 * 1024


def test_supplier_detail_and_search(demo_db, use_db):
    use_db(demo_db)
    at = app()
    at.switch_page("pages/fournisseurs.py").run()
    assert_clean(at, "fournisseurs")
    at.selectbox(key="sup_detail").select_index(0).run()
    assert_clean(at, "fiche")
    assert any(m.value.startswith("### ") for m in at.markdown)
    assert len(at.get("plotly_chart")) >= 1
    at.text_input(key="sup_search").set_value("zzzz-introuvable").run()
    assert_clean(at, "recherche vide")
    assert "Aucun fournisseur" in at.info[0].value


def test_commune_map_and_regions(demo_db, use_db):
    use_db(demo_db)
    at = app()
    at.switch_page("pages/territoire.py").run()
    maps = len(at.get("plotly_chart"))
    at.selectbox(key="terr_dep").set_value("62").run()
    assert_clean(at, "communes du 62")
    assert len(at.get("plotly_chart")) == maps
    at.segmented_control(key="terr_level").set_value("region").run()
    assert_clean(at, "régions")


def test_analyst_changes_buyer_territory(demo_db, use_db):
    """Setting the territory to Pas-de-Calais (62) changes the local share on every page."""
    use_db(demo_db, copy=True)
    at = app()
    before = metric(at, "Part locale")
    at.switch_page("pages/import_donnees.py").run()
    at.text_input(key="imp_buyer_terr").set_value("dep:62")
    at.button(key="FormSubmitter:imp_buyer_form-Enregistrer").click().run()
    assert_clean(at, "acheteur")
    assert "Pas-de-Calais (62)" in at.success[0].value
    assert "territoire : Pas-de-Calais (62)" in at.sidebar.caption[0].value
    at.switch_page("pages/vue_ensemble.py").run()
    assert metric(at, "Part locale") != before
