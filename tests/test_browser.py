"""The real thing: the README's run command on a free port, headless Chromium (Debian's
``chromium``, driven by Playwright's bundled driver: never ``playwright install``)
opens every page, waits for it to finish, checks for errors and key figures, and saves
a screenshot per page into test-artifacts/screenshots/."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_pages import demo_database  # tests/ is on sys.path (pytest rootdir import)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("EMPREINTE_CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "test-artifacts" / "screenshots"
# Navigation label -> (file name stem, the page's title, a text proving its key figures are there)
PAGES = {
    "Vue d'ensemble": ("01_vue_ensemble", "Vue d'ensemble", "Dépense totale"),
    "SPASER": ("02_spaser", "SPASER", "Réalisé et trajectoire"),
    "Revue mensuelle": ("03_revue", "Revue mensuelle", "Revue mensuelle"),
    "Empreinte territoriale": ("04_territoire", "Empreinte territoriale", "Part locale"),
    "Empreinte économique": ("05_economie", "Empreinte économique", "Part PME"),
    "ESS et inclusion": ("06_ess_inclusion", "ESS et inclusion", "Part ESS"),
    "Fournisseurs": ("07_fournisseurs", "Fournisseurs", "fournisseurs,"),
    "Sourcing": ("08_sourcing", "Sourcing", "Structures de l'ESS"),
    "Leviers d'action": ("11_leviers", "Leviers d'action", "Potentiel de réservation"),
    "Import": ("09_import", "Import des données", "Historique des imports"),
    "Données et méthodes": ("10_methodes", "Données et méthodes", "Définitions des indicateurs"),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from _serve(tmp_path_factory)


@pytest.fixture
def fresh_server(tmp_path_factory):
    """A server no session has visited yet (its own process)."""
    yield from _serve(tmp_path_factory)


def _serve(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} absent (apt-get install -y chromium)")
    pytest.importorskip("playwright")
    db = tmp_path_factory.mktemp("browser") / "demo.duckdb"
    shutil.copy(demo_database(tmp_path_factory), db)  # the app holds the write lock on its copy
    port = _free_port()
    env = {**os.environ, "EMPREINTE_DB": str(db)}
    env.pop("EMPREINTE_ROLE", None)
    log = open(tmp_path_factory.mktemp("log") / "streamlit.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "dashboard.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                pytest.fail(f"le serveur streamlit n'a pas démarré (voir {log.name})")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _wait_idle(page, timeout_ms: int = 90_000, what: str = "") -> None:
    """Until the app stops running: the status widget gone (and stays gone briefly)."""
    page.wait_for_selector('[data-testid="stSidebarNavLink"]', timeout=timeout_ms)
    deadline = time.time() + timeout_ms / 1000
    quiet_since = None
    while time.time() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        skeleton = page.locator('[data-testid="stSkeleton"]').count() > 0
        if running or skeleton:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since > 1.0:
            return
        page.wait_for_timeout(250)
    status = page.locator('[data-testid="stStatusWidget"]')
    text = status.first.inner_text() if status.count() else "(squelette)"
    raise AssertionError(f"{what} : la page tourne encore après {timeout_ms // 1000} s ({text!r})")


def _screenshot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main block, so the viewport is grown
    to the content's height for the shot."""
    height = page.evaluate(
        '() => Math.max(...[...document.querySelectorAll(\'[data-testid="stMain"], '
        '[data-testid="stMainBlockContainer"]\')].map(e => e.scrollHeight), 1000)'
    )
    page.set_viewport_size({"width": 1440, "height": min(int(height) + 40, 12_000)})
    page.wait_for_timeout(800)  # plotly resizes
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1440, "height": 1000})


def test_every_page_in_chromium(server):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    timings = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1440, "height": 1000}, locale="fr-FR")
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server, wait_until="domcontentloaded")
        _wait_idle(page, what="accueil")
        for label, (stem, title, expected) in PAGES.items():
            link = page.locator('[data-testid="stSidebarNavLink"]', has_text=label).first
            t0 = time.time()
            link.click()
            # The new page has started when its title shows (a slow server may not have
            # begun the run yet when the previous page looks idle).
            page.locator("h1", has_text=title).first.wait_for(timeout=90_000)
            _wait_idle(page, what=label)
            timings[label] = round(time.time() - t0, 1)
            page.wait_for_timeout(500)  # charts draw after the script ends
            _screenshot(page, SHOTS / f"{stem}.png")
            assert page.locator('[data-testid="stException"]').count() == 0, label
            if label != "Revue mensuelle":  # that page shows its alerts as errors
                assert page.locator('[data-testid="stAlertContentError"]').count() == 0, label
            assert expected in page.inner_text("body"), f"{label}: « {expected} » absent"
        # A map is drawn offline (no tile server, no CDN topojson).
        page.locator('[data-testid="stSidebarNavLink"]', has_text="Empreinte territoriale").first.click()
        _wait_idle(page, what="carte")
        page.wait_for_selector(".js-plotly-plot .choroplethlayer path", timeout=30_000)
        browser.close()
    (SHOTS / "timings.txt").write_text("\n".join(f"{k}: {v} s" for k, v in timings.items()), encoding="utf-8")
    assert not [e for e in errors if "plotly" in e.lower()], errors


def test_a_page_address_as_first_request_of_a_fresh_server(fresh_server):
    """Until dashboard.py has run once, Streamlit serves pages/ directly, also under
    their file names: a bookmarked page used to fail (no filters). It now goes through
    the frame and opens the page asked for (here by its file name, ess_inclusion, whose
    address is ess-inclusion), without an error; then another page by its address."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1440, "height": 1000}, locale="fr-FR")
        page.goto(f"{fresh_server}/ess_inclusion", wait_until="domcontentloaded")
        page.locator("h1", has_text="ESS et inclusion").first.wait_for(timeout=90_000)
        _wait_idle(page, what="adresse directe")
        assert page.url.rstrip("/").endswith("/ess-inclusion")
        assert page.locator('[data-testid="stException"]').count() == 0
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0
        page.goto(f"{fresh_server}/spaser", wait_until="domcontentloaded")
        page.locator("h1", has_text="SPASER").first.wait_for(timeout=90_000)
        _wait_idle(page, what="SPASER")
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0
        browser.close()
