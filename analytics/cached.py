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

import dataclasses
import datetime as dt
import importlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from analytics import aggregates, auth, store

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
    con = store.connect(path)
    return con, store.share_reference(con)


def connection():
    """The process-wide read-write connection to the database."""
    return _connection(db_file())[0]


@contextmanager
def cursor():
    """A cursor on the shared connection, with the ``ref_*`` views, closed after use."""
    con, shared = _connection(db_file())
    cur = con.cursor()
    try:
        if shared:
            store.use_shared_reference(cur)
        else:
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
    with cursor() as cur, aggregates.serving(db, version):
        out = fn(cur, *args, **dict(kwargs))
    log.debug("%s en %.0f ms", name, (time.perf_counter() - t0) * 1000)
    return out


# The process's recent calls (database, name, args, kwargs), the most recent last, for warm().
_RECENT: OrderedDict[tuple, None] = OrderedDict()
_RECENT_LOCK = threading.Lock()


_RECENT_NEW = threading.Event()  # a call joined the list since it was last saved

# Set when a page has been drawn: the IO model and the results of a restart are loaded
# after the first page, not against it (2 cores: the first visitor's page would wait twice as long).
_PAGE_DRAWN = threading.Event()


def _remember(keys) -> bool:
    """Put ``keys`` last in the recent calls, in order, keeping the WARM_CALLS most recent
    (the caller holds _RECENT_LOCK); whether any of them was new."""
    new = False
    for key in keys:
        new |= _RECENT.pop(key, False) is False
        _RECENT[key] = None
    while len(_RECENT) > WARM_CALLS:
        _RECENT.popitem(last=False)
    return new


def call(name: str, *args, **kwargs):
    """The engine function ``name`` on a cursor, cached by its arguments and the data version."""
    kw, db = tuple(sorted(kwargs.items())), db_file()
    with _RECENT_LOCK:
        if _remember([(db, name, args, kw)]):
            _RECENT_NEW.set()
    return _cached_call(name, db, data_version(), args, kw)


# --- the recent calls kept across restarts ---------------------------------------------
# Saved as JSON next to the database (never pickle: the file is read back at start), with
# only the argument types the pages pass; anything else is simply not kept.


def recent_file(db: str | None = None) -> Path:
    return Path((db or db_file()) + ".recent.json")


def _classes() -> dict:
    from analytics.filters import Filters, Territory
    from analytics.levers import ReservationRules

    return {"Filters": Filters, "Territory": Territory, "ReservationRules": ReservationRules}


def _encode(v, classes: dict):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
        return {"$date": v.isoformat()}
    if isinstance(v, tuple):
        return {"$tuple": [_encode(x, classes) for x in v]}
    name = type(v).__name__
    if dataclasses.is_dataclass(v) and classes.get(name) is type(v):
        return {"$" + name: {f.name: _encode(getattr(v, f.name), classes) for f in dataclasses.fields(v)}}
    raise TypeError(f"not kept: {type(v)!r}")


def _decode(v, classes: dict):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if not isinstance(v, dict) or len(v) != 1:
        raise ValueError("unexpected value")
    ((tag, inner),) = v.items()
    if tag == "$date":
        return dt.date.fromisoformat(inner)
    if tag == "$tuple" and isinstance(inner, list):
        return tuple(_decode(x, classes) for x in inner)
    cls = classes.get(tag[1:]) if tag.startswith("$") else None
    if cls is None or not isinstance(inner, dict):
        raise ValueError(f"unexpected tag {tag!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    if not set(inner) <= names:
        raise ValueError(f"unexpected fields for {tag}")
    return cls(**{k: _decode(x, classes) for k, x in inner.items()})


def save_recent(db: str | None = None) -> bool:
    """Write this process's recent calls on ``db`` (most recent last) next to the database,
    when a call joined them since the last save. False when nothing was written."""
    db = db or db_file()
    if not _RECENT_NEW.is_set():
        return False
    _RECENT_NEW.clear()
    classes = _classes()
    with _RECENT_LOCK:
        todo = [(n, a, k) for d, n, a, k in _RECENT if d == db]
    rows = []
    for name, args, kw in todo:
        try:
            rows.append({"name": name, "args": _encode(args, classes), "kwargs": _encode(kw, classes)})
        except TypeError:
            continue
    path = recent_file(db)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps({"version": 1, "calls": rows[-WARM_CALLS:]}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # a read-only folder: the list is simply not kept
        log.debug("liste des appels récents non enregistrée", exc_info=True)
        return False
    return True


def load_recent(db: str | None = None) -> int:
    """Add the calls saved by an earlier process on ``db`` to the recent calls (as the
    oldest); an unreadable file or entry is ignored. Returns the number added."""
    db = db or db_file()
    try:
        data = json.loads(recent_file(db).read_text(encoding="utf-8"))
        calls = data["calls"] if isinstance(data, dict) and data.get("version") == 1 else []
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    classes, kept = _classes(), []
    for row in calls[-WARM_CALLS:] if isinstance(calls, list) else []:
        try:
            name = row["name"]
            if not isinstance(name, str) or resolve(name) is None:
                continue
            args, kw = _decode(row["args"], classes), _decode(row["kwargs"], classes)
            if not isinstance(args, tuple) or not isinstance(kw, tuple):
                continue
            if not all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in kw):
                continue
            hash((args, kw))
            kept.append((db, name, args, kw))
        except Exception:  # a damaged or foreign entry: skipped
            continue
    with _RECENT_LOCK:  # the saved calls first (the oldest), then this process's
        current = list(_RECENT)
        _RECENT.clear()
        _remember(kept + current)
    return len(kept)


def page_drawn() -> None:
    """Called by every page once drawn: keeps the recent calls for the next start."""
    _PAGE_DRAWN.set()
    save_recent()


@st.cache_resource(show_spinner=False)
def _resumed(db: str) -> threading.Thread | None:
    if not load_recent(db):
        return None
    cur = connection().cursor()
    try:
        version = store.data_version(cur)
    finally:
        cur.close()
    return warm(version, db, after=_PAGE_DRAWN)


def resume() -> threading.Thread | None:
    """Once per process and database: compute again, in the background, the results the
    previous process served most recently (saved by :func:`save_recent`), once the first
    page is drawn, so the visitors after a restart find them ready, as after an import
    (:func:`warm`)."""
    return _resumed(db_file())


def warm(
    version: str, db: str | None = None, seconds: float = WARM_SECONDS, after: threading.Event | None = None
) -> threading.Thread:
    """Compute again, for data version ``version``, the calls this process served most
    recently (most recent first, until ``seconds`` have passed), in a background thread:
    the pages people were reading are ready when they come back after an import.
    A call that fails is skipped (the page will show its error itself). ``after``: wait
    for this event first (at most ``seconds``)."""
    db = db or db_file()
    with _RECENT_LOCK:
        todo = [(n, a, k) for d, n, a, k in reversed(_RECENT) if d == db]

    def run() -> None:
        if after is not None:
            after.wait(seconds)
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
        log.info(
            "%d résultats préparés pour la version %s en %.1f s", done, version, time.perf_counter() - t0
        )

    thread = threading.Thread(target=run, name="empreinte-warm", daemon=True)
    try:  # the session's context, so Streamlit's caches do not warn about a missing one
        from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

        add_script_run_ctx(thread, get_script_run_ctx(suppress_warning=True))
    except Exception:
        pass
    thread.start()
    return thread


@st.cache_resource(show_spinner=False)
def _preloaded(db: str) -> threading.Thread:
    def run() -> None:
        _PAGE_DRAWN.wait(WARM_SECONDS)  # not against the first page (see _PAGE_DRAWN)
        t0 = time.perf_counter()
        try:
            from analytics import footprint

            with cursor() as cur:
                footprint.preload(cur)
            log.info("modèle entrées-sorties chargé en %.1f s", time.perf_counter() - t0)
        except Exception:  # the page will show its own error
            log.debug("préchargement du modèle impossible", exc_info=True)

    thread = threading.Thread(target=run, name="empreinte-preload", daemon=True)
    thread.start()
    return thread


def preload() -> threading.Thread:
    """Once per process and database, in a background thread, once the first page is
    drawn: load what the first visit of a page would otherwise wait for (the footprint's
    input-output model, 0.1 to 0.3 s)."""
    return _preloaded(db_file())


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
