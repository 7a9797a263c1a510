"""The one Streamlit-aware module of ``analytics``: caches over the engine.

* one database connection per process (``st.cache_resource``); DuckDB lets a single
  process write the file, so the dashboard holds the read-write connection and runs
  imports itself. Every query gets its own ``cursor()`` (a connection shared between
  sessions' threads is not safe), with the reference views attached.
* engine results (small aggregated tables and dicts) in ``st.cache_data`` keyed by the
  function, its arguments (the frozen ``Filters``) and ``store.data_version``, which
  changes with every import, undo, setting or target: nothing stale is ever served.
* geometries once per process (``st.cache_resource``).
* after a write (an import, an undo, a setting, a target) the results asked for most
  recently are computed again for the new data version in a background thread
  (:func:`warm`), so the next visitor of the dashboard does not wait for them.

Pages call :func:`call` (``cached.call("indicators.spend_by_region", f)``) or the named
helpers; writes go through :func:`write`, which checks the role first.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager

import streamlit as st

from analytics import auth, store

log = logging.getLogger("empreinte")

# Results are keyed by the data version, so none is ever stale: the TTL only frees, after
# half a day, the memory of results nobody asked for again.
TTL_SECONDS = 12 * 3600
MAX_ENTRIES = 400
# The calls replayed after a write (most recent first), and the time they may take.
WARM_CALLS = 60
WARM_SECONDS = 120.0
# Engine modules the pages may call through the cache (never a name from user input).
MODULES = ("indicators", "referential", "footprint", "spaser", "levers", "review", "facets", "report")
_VERSION_KEY = "_empreinte_data_version"


def db_file() -> str:
    return str(store.db_path())


@st.cache_resource(show_spinner=False)
def _connection(path: str):
    return store.connect(path)


def connection():
    """The process-wide read-write connection to the database."""
    return _connection(db_file())


@contextmanager
def cursor():
    """A cursor on the shared connection, with the ``ref_*`` views, closed after use."""
    cur = connection().cursor()
    try:
        store.attach_reference(cur)
        yield cur
    finally:
        cur.close()


def data_version(refresh: bool = False) -> str:
    """The database's data version, read once per script run: the frame calls
    ``data_version(refresh=True)`` first thing, and so does every write."""
    if refresh or _VERSION_KEY not in st.session_state:
        cur = connection().cursor()
        try:
            st.session_state[_VERSION_KEY] = store.data_version(cur)
        finally:
            cur.close()
    return st.session_state[_VERSION_KEY]


def resolve(name: str):
    """'indicators.headline' -> the function, or None when that module or function is absent."""
    module, _, func = name.partition(".")
    if module not in MODULES or not func or func.startswith("_"):
        raise ValueError(f"Fonction non autorisée : {name}")
    try:
        mod = importlib.import_module(f"analytics.{module}")
    except ImportError:
        return None
    return getattr(mod, func, None)


def available(name: str) -> bool:
    return resolve(name) is not None


@st.cache_data(ttl=TTL_SECONDS, max_entries=MAX_ENTRIES, show_spinner=False)
def _cached_call(name: str, db: str, version: str, args: tuple, kwargs: tuple):
    fn = resolve(name)
    if fn is None:
        raise LookupError(f"{name} n'existe pas dans cette version du moteur.")
    t0 = time.perf_counter()
    with cursor() as cur:
        out = fn(cur, *args, **dict(kwargs))
    log.debug("%s en %.0f ms", name, (time.perf_counter() - t0) * 1000)
    return out


# The process's recent calls (database, name, args, kwargs), the most recent last, for warm().
_RECENT: OrderedDict[tuple, None] = OrderedDict()
_RECENT_LOCK = threading.Lock()


def call(name: str, *args, **kwargs):
    """The engine function ``name`` on a cursor, cached by its arguments and the data version."""
    kw, db = tuple(sorted(kwargs.items())), db_file()
    with _RECENT_LOCK:
        _RECENT.pop((db, name, args, kw), None)
        _RECENT[(db, name, args, kw)] = None
        while len(_RECENT) > WARM_CALLS:
            _RECENT.popitem(last=False)
    return _cached_call(name, db, data_version(), args, kw)


def warm(version: str, db: str | None = None, seconds: float = WARM_SECONDS) -> threading.Thread:
    """Compute again, for data version ``version``, the calls this process served most
    recently (most recent first, until ``seconds`` have passed), in a background thread:
    the pages people were reading are ready when they come back after an import.
    A call that fails is skipped (the page will show its error itself)."""
    db = db or db_file()
    with _RECENT_LOCK:
        todo = [(n, a, k) for d, n, a, k in reversed(_RECENT) if d == db]

    def run() -> None:
        t0 = time.perf_counter()
        done = 0
        for name, args, kw in todo:
            if time.perf_counter() - t0 > seconds:
                break
            try:
                _cached_call(name, db, version, args, kw)
                done += 1
            except Exception:
                log.debug("préchargement de %s impossible", name, exc_info=True)
        log.info("%d résultats préparés pour la version %s en %.1f s", done, version, time.perf_counter() - t0)

    thread = threading.Thread(target=run, name="empreinte-warm", daemon=True)
    try:  # the session's context, so Streamlit's caches do not warn about a missing one
        from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

        add_script_run_ctx(thread, get_script_run_ctx(suppress_warning=True))
    except Exception:
        pass
    thread.start()
    return thread


def call_or_none(name: str, *args, **kwargs):
    """Like :func:`call`, None when the function does not exist (yet) in the engine."""
    if not available(name):
        return None
    return call(name, *args, **kwargs)


def headline(f):
    return call("indicators.headline", f)


def headline_with_previous(f):
    """(current, previous-year) headline dicts."""
    if available("indicators.headline_with_previous"):
        out = call("indicators.headline_with_previous", f)
        if isinstance(out, tuple):
            return out
        if isinstance(out, dict) and "current" in out:
            return out["current"], out.get("previous") or {}
    return headline(f), headline(f.previous_year())


def facets() -> dict:
    return call("facets.facets")


def last_import() -> dict | None:
    return _last_import(db_file(), data_version())


@st.cache_data(ttl=TTL_SECONDS, max_entries=8, show_spinner=False)
def _last_import(db: str, version: str):
    with cursor() as cur:
        return store.last_import(cur)


def imports() -> list[dict]:
    """The import ledger, newest first (``ingest.common.list_imports``)."""
    return _imports(db_file(), data_version())


@st.cache_data(ttl=TTL_SECONDS, max_entries=8, show_spinner=False)
def _imports(db: str, version: str):
    from analytics.ingest.common import list_imports

    with cursor() as cur:
        return list_imports(cur)


def buyer() -> dict | None:
    return call_or_none("referential.get_buyer")


# --- geometry ------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def france_geojson(level: str) -> dict:
    from analytics import geo

    return geo.france_geojson(level)


@st.cache_resource(show_spinner=False, max_entries=8)
def communes_geojson(departement: str) -> dict:
    from analytics import geo

    return geo.communes_geojson(departement)


def geojson_url(level: str, departement: str | None = None) -> str | None:
    """URL of the map geometry served by Streamlit (None when static serving is off)."""
    if not st.get_option("server.enableStaticServing"):
        return None
    return _geojson_url(level, departement)


@st.cache_resource(show_spinner=False, max_entries=32)
def _geojson_url(level: str, departement: str | None):
    from analytics import geo

    return geo.static_url(level, departement)


# --- writes --------------------------------------------------------------------------


def write(fn, *args, **kwargs):
    """Run a write on its own cursor after checking that the user is an analyst.

    ``fn(cur, *args, who=…, **kwargs)`` when it accepts ``who``. The role is checked
    here, on the server, whatever the page showed.
    """
    who = auth.require_analyst()
    import inspect

    params = inspect.signature(fn).parameters
    if "who" in params and "who" not in kwargs:
        kwargs["who"] = who
    before = data_version()
    with cursor() as cur:
        out = fn(cur, *args, **kwargs)
    after = data_version(refresh=True)
    if after != before:
        warm(after)
    return out


def invalidate() -> None:
    """Forget cached results (they are keyed by the data version anyway)."""
    data_version(refresh=True)
