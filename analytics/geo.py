"""Map geometries for the dashboard: départements and régions of France with the overseas
départements moved into insets near metropolitan France, and communes one département
at a time. Everything is read once per process (the files are shipped in ``data/ref``).

GeoJSON features carry ``properties.code`` (INSEE code) and ``properties.nom``; the
figures use ``featureidkey="properties.code"``.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

from analytics.filters import Territory
from analytics.store import REF_DIR, ROOT

# Streamlit serves <app>/static/ at app/static/ when server.enableStaticServing is on: a
# map then references its geometry by URL (fetched once by the browser) instead of
# carrying it in every figure.
STATIC_DIR = ROOT / "static"

LEVEL_FILES = {"departement": "departements_inset.geojson", "region": "regions_inset.geojson"}


def available(level: str = "departement") -> bool:
    return (REF_DIR / LEVEL_FILES[level]).exists()


@lru_cache(maxsize=4)
def france_geojson(level: str = "departement") -> dict:
    """Départements or régions (with overseas insets) as a GeoJSON dict."""
    path = REF_DIR / LEVEL_FILES[level]
    data = json.loads(path.read_text(encoding="utf-8"))
    for feat in data["features"]:
        props = feat.setdefault("properties", {})
        props["code"] = str(props.get("code"))
    return data


@lru_cache(maxsize=1)
def inset_boxes() -> dict | None:
    """The frames drawn around the overseas insets, or None."""
    path = REF_DIR / "inset_boxes.geojson"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _communes():
    import geopandas as gpd

    path = REF_DIR / "communes_geo.parquet"
    g = gpd.read_parquet(path)
    g["code_departement"] = g["code_departement"].astype(str)
    return g


def communes_available() -> bool:
    return (REF_DIR / "communes_geo.parquet").exists()


@lru_cache(maxsize=8)
def communes_geojson(departement: str) -> dict:
    """The communes of one département as a GeoJSON dict (properties: code, nom); only
    that département's rows are read from the file. Read with pyarrow and shapely: the
    geometry column is WKB, and geopandas with its projection library would add 0.15–0.2 s
    to the first map of a process."""
    import pyarrow.parquet as pq
    import shapely

    t = pq.read_table(
        REF_DIR / "communes_geo.parquet",
        columns=["code_commune", "nom", "geometry"],
        filters=[("code_departement", "==", str(departement))],
    )
    shapes = shapely.to_geojson(shapely.from_wkb(t.column("geometry").to_numpy(zero_copy_only=False)))
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"code": str(c), "nom": n}, "geometry": json.loads(g)}
            for c, n, g in zip(t.column("code_commune").to_pylist(), t.column("nom").to_pylist(), shapes)
            if g is not None
        ],
    }


def static_url(level: str, departement: str | None = None) -> str | None:
    """The geometry written once under static/ and its URL relative to the app
    (``app/static/…``); None when it cannot be written (read-only install)."""
    if level == "commune":
        name, source = f"communes_{departement}", REF_DIR / "communes_geo.parquet"
        build = lambda: communes_geojson(str(departement))  # noqa: E731
    else:
        name, source = LEVEL_FILES[level].removesuffix(".geojson"), REF_DIR / LEVEL_FILES[level]
        build = lambda: france_geojson(level)  # noqa: E731
    path = STATIC_DIR / f"{name}.geojson"
    try:
        if not path.exists() or path.stat().st_mtime < source.stat().st_mtime:
            STATIC_DIR.mkdir(exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(build(), ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
            tmp.replace(path)
    except OSError:
        return None
    return f"app/static/{path.name}"


def _epci_communes(siren: tuple[str, ...]) -> list[str]:
    import pandas as pd

    ref = pd.read_parquet(REF_DIR / "communes.parquet", columns=["code_commune", "epci_siren", "type"])
    ref = ref[ref["epci_siren"].astype(str).isin(siren)]
    return ref["code_commune"].astype(str).tolist()


@lru_cache(maxsize=16)
def territory_lines(territory: Territory) -> tuple[list[float | None], list[float | None]]:
    """The outline of a territory as (lons, lats) with None between rings, in the map's
    coordinates (départements and régions in their inset positions)."""
    import shapely
    from shapely.geometry import shape

    if territory.kind in ("dep", "reg"):
        level = "departement" if territory.kind == "dep" else "region"
        geoms = [
            shape(f["geometry"])
            for f in france_geojson(level)["features"]
            if f["properties"]["code"] in territory.codes
        ]
    else:
        codes = territory.codes if territory.kind == "com" else tuple(_epci_communes(territory.codes))
        g = _communes()
        geoms = list(g[g["code_commune"].isin(codes)].geometry)
    if not geoms:
        return [], []
    merged = shapely.union_all(geoms)
    return _boundary_lines(merged)


def _boundary_lines(geom) -> tuple[list, list]:
    lons: list[float | None] = []
    lats: list[float | None] = []
    boundary = geom.boundary
    parts = getattr(boundary, "geoms", [boundary])
    for line in parts:
        xs, ys = line.xy
        lons.extend(list(xs) + [None])
        lats.extend(list(ys) + [None])
    return lons, lats


def box_lines() -> tuple[list, list]:
    """The inset frames as (lons, lats) lines."""
    from shapely.geometry import shape

    boxes = inset_boxes()
    if not boxes:
        return [], []
    lons: list = []
    lats: list = []
    for f in boxes["features"]:
        x, y = _boundary_lines(shape(f["geometry"]))
        lons += x
        lats += y
    return lons, lats
