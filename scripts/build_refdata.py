#!/usr/bin/env python
"""Build the compact reference data shipped in ``data/ref/``.

Reads the public sources gathered in the shared data folder (``--shared``, by default
``../shared/data`` relative to the repository root) and writes Parquet (zstd) and GeoJSON
files that the application reads at run time. The application never reads the shared
folder itself.

The build is deterministic: rows are sorted, no randomness, and the same inputs give the
same files. Run it with the project's virtualenv::

    .venv/bin/python scripts/build_refdata.py [--shared PATH] [--out PATH]

Provenance and derivation rules are documented in ``data/README.md``
("Données de référence").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import time
import unicodedata
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "data" / "ref"

# --- geometry parameters (documented in data/README.md) ------------------------------
# Coverage simplification tolerance (degrees, Visvalingam-Whyatt "sqrt of triangle area")
# for départements / régions. Régions are the union of the simplified départements, so
# région and département borders coincide exactly.
TOL_DEPARTEMENTS = 0.008
# Communes: the source is already simplified (0.003°) polygon by polygon, so it is not a
# clean coverage. Per département: coverage_clean (gaps < GAP_COMMUNES merged), then
# coverage_simplify(TOL_COMMUNES).
TOL_COMMUNES = 0.003
GAP_COMMUNES = 0.003
GRID = 1e-4  # 4 decimals (~10 m)

# Overseas insets: département code -> (région code, box centre lon, box centre lat).
# The boxes sit over the Bay of Biscay, west/south-west of Brittany and off the Landes
# coast (frames: lon -7.8 to -2.8, lat 43.5 to 48.5), INSEE order by columns: Guadeloupe,
# Martinique, Guyane on the outer column, La Réunion, Mayotte on the inner one. Each
# territory is scaled to fit a box INSET_BOX_H degrees of latitude high and as wide in
# kilometres (a ~square box on a conformal/conic projection): Guyane is thus shrunk,
# the islands enlarged.
INSETS = {
    "971": ("01", -6.6, 47.7),
    "972": ("02", -6.6, 46.0),
    "973": ("03", -6.6, 44.3),
    "974": ("04", -4.0, 46.0),
    "976": ("06", -4.0, 44.3),
}
INSET_BOX_H = 1.5
INSET_FILL = 0.92  # share of the box used by the territory

# Spatial mapping of 2018 codes absent from the 2026 list
BORDER_STRIP = 0.01  # degrees: width of the strip used to measure shared borders
RECENT_SIREN_MIN, RECENT_SIREN_MAX = 200_080_000, 201_000_000

ARRONDISSEMENT_CITIES = (("751", "75056"), ("6938", "69123"), ("132", "13055"))


# --- helpers --------------------------------------------------------------------------


def read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV with every column as text, empty cells as ''."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")


def _nullable(value):
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def write_parquet(df: pd.DataFrame, path: Path, schema: dict[str, str]) -> None:
    """Write ``df`` with an explicit Arrow schema (str/int/float/bool), zstd."""
    arrays, fields = [], []
    for col, kind in schema.items():
        values = [_nullable(v) for v in df[col].tolist()]
        if kind == "str":
            typ = pa.string()
            values = [None if v is None else str(v) for v in values]
        elif kind == "int":
            typ = pa.int64()
            values = [None if v is None else int(float(v)) for v in values]
        elif kind == "float":
            typ = pa.float64()
            values = [None if v is None else float(v) for v in values]
        elif kind == "bool":
            typ = pa.bool_()
            values = [None if v is None else bool(v) for v in values]
        else:  # pragma: no cover - programming error
            raise ValueError(kind)
        arrays.append(pa.array(values, type=typ))
        fields.append(pa.field(col, typ))
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")


def normalize_name(name: str) -> str:
    """Upper-case, no accents, hyphens/apostrophes as spaces, SAINT(E) -> ST(E)."""
    text = unicodedata.normalize("NFKD", str(name))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).upper()
    text = text.replace("Œ", "OE").replace("Æ", "AE")
    text = re.sub(r"\bCEDEX\b.*$", "", text)
    text = re.sub(r"[^A-Z0-9]+", " ", text)
    words = []
    for word in text.split():
        word = {"SAINT": "ST", "SAINTE": "STE", "SAINTS": "STS", "SAINTES": "STES"}.get(word, word)
        words.append(word)
    return " ".join(words)


def _round_coords(obj):
    if isinstance(obj, (list, tuple)):
        if obj and isinstance(obj[0], (int, float)):
            return [round(float(v), 4) for v in obj]
        return [_round_coords(v) for v in obj]
    return obj


def prepare_geoms(geoms) -> np.ndarray:
    """4-decimal grid (keeps shared vertices shared), exterior rings clockwise.

    Clockwise exteriors follow the d3-geo convention used by plotly ``go.Choropleth``
    (the opposite of RFC 7946): counter-clockwise rings would be filled inside-out.
    """
    out = shapely.set_precision(np.asarray(geoms, dtype=object), GRID)
    out = shapely.make_valid(out)
    out = np.array([_polygonal(g) for g in out], dtype=object)
    return shapely.orient_polygons(out, exterior_cw=True)


def _polygonal(geom):
    """Keep only the polygonal part of a geometry (make_valid may add lines/points)."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    polys = []
    for part in parts:
        polys.extend(getattr(part, "geoms", [part]))
    return shapely.MultiPolygon(polys) if len(polys) > 1 else polys[0]


def write_geojson(records: list[dict], geoms, path: Path) -> None:
    """Compact GeoJSON FeatureCollection (4 decimals, no id)."""
    features = []
    for props, geom in zip(records, geoms, strict=True):
        gj = json.loads(shapely.to_geojson(geom))
        gj["coordinates"] = _round_coords(gj["coordinates"])
        features.append({"type": "Feature", "properties": props, "geometry": gj})
    doc = {"type": "FeatureCollection", "features": features}
    path.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


def arrondissement_city(code: str) -> str | None:
    for prefix, city in ARRONDISSEMENT_CITIES:
        if code.startswith(prefix):
            return city
    return None


# --- communes ---------------------------------------------------------------------------


class Geo2018:
    """The COG 2018 commune polygons and centroids (france-geojson)."""

    def __init__(self, shared: Path):
        geo = shared / "geo"
        gdf = gpd.read_file(geo / "communes-simplifiees-0.003deg__from_france-geojson.geojson")
        self.gdf = gdf.sort_values("code", kind="stable").reset_index(drop=True)
        self.codes = self.gdf["code"].tolist()
        self.index = {c: i for i, c in enumerate(self.codes)}
        self.geoms = np.asarray(self.gdf.geometry.values, dtype=object)
        self.tree = shapely.STRtree(self.geoms)
        cen = read_csv(geo / "communes-centroides__from_france-geojson.csv")
        self.centroids: dict[str, tuple[float, float]] = {}
        self.names: dict[str, str] = {}
        self.deps: dict[str, str] = {}
        for row in cen.itertuples(index=False):
            lon = row.point_interieur_lon or row.centroid_lon
            lat = row.point_interieur_lat or row.centroid_lat
            if lon and lat:
                self.centroids[row.code_commune] = (float(lon), float(lat))
            self.names[row.code_commune] = row.nom_commune
            self.deps[row.code_commune] = row.departement

    def border_scores(self, code: str, code_to_current: dict[str, str]) -> dict[str, float]:
        """Shared-border length proxy between ``code`` and each current commune.

        The polygon is buffered by BORDER_STRIP; the area of its intersection with each
        neighbouring 2018 polygon is ~ shared border length x strip width. Scores are
        summed per current commune of the neighbours.
        """
        geom = self.geoms[self.index[code]]
        strip = shapely.buffer(geom, BORDER_STRIP)
        scores: dict[str, float] = defaultdict(float)
        for i in sorted(self.tree.query(strip, predicate="intersects").tolist()):
            other = self.codes[i]
            if other == code or other not in code_to_current:
                continue
            area = shapely.area(shapely.intersection(strip, self.geoms[i]))
            if area > 0:
                scores[code_to_current[other]] += float(area)
        return scores


class CurrentCommunes:
    """What the spatial mapping needs to know of the current communes."""

    def __init__(self, cur: pd.DataFrame, geo: Geo2018):
        self.names = {c: normalize_name(n) for c, n in zip(cur["code_commune"], cur["nom"], strict=True)}
        self.deps = dict(zip(cur["code_commune"], cur["code_departement"], strict=True))
        self.points = {c: geo.centroids[c] for c in cur["code_commune"] if c in geo.centroids}
        # Communes nouvelles created after the 2018 geometry get a new SIREN, numbered
        # from ~200080000 on (checked on the déléguées: 95% of the communes nouvelles
        # whose déléguées are still in the 2018 file are above, and 99% of the older ones
        # below). A fusion since 2018 almost always produced such a commune.
        self.recent = {
            c
            for c, s in zip(cur["code_commune"], cur["siren_commune"], strict=True)
            if s and RECENT_SIREN_MIN <= int(s) < RECENT_SIREN_MAX and not c.startswith("976")
        }


def choose_current(
    code: str, geo: Geo2018, code_to_current: dict[str, str], cc: CurrentCommunes
) -> tuple[str | None, str]:
    """Map a 2018 code that has no row in the 2026 list to a current commune.

    Candidates are the current communes of the neighbouring 2018 polygons.
    1. a candidate whose name contains the old name ('name+border');
    2. else, among the candidates that are communes nouvelles created since 2018 (recent
       SIREN), the one sharing the longest border ('border+recent');
    3. else the candidate sharing the longest border ('border');
    4. else the nearest current commune point in the same département ('nearest').
    """
    scores = geo.border_scores(code, code_to_current)
    old_name = normalize_name(geo.names.get(code, ""))
    if scores and old_name:
        pattern = re.compile(rf"(^| ){re.escape(old_name)}( |$)")
        named = [c for c in sorted(scores) if pattern.search(cc.names[c])]
        if named:
            return max(named, key=lambda c: (scores[c], c)), "name+border"
    recent = [c for c in sorted(scores) if c in cc.recent]
    if recent:
        return max(recent, key=lambda c: scores[c]), "border+recent"
    if scores:
        return max(sorted(scores), key=lambda c: scores[c]), "border"
    point = geo.centroids.get(code)
    dep = geo.deps.get(code)
    if point is None:
        return None, "unresolved"
    best, best_d = None, float("inf")
    for cur in sorted(cc.points):
        if cc.deps.get(cur) != dep:
            continue
        lon, lat = cc.points[cur]
        dist = ((lon - point[0]) * math.cos(math.radians(lat))) ** 2 + (lat - point[1]) ** 2
        if dist < best_d:
            best, best_d = cur, dist
    return best, ("nearest" if best else "unresolved")


def build_communes(shared: Path, geo: Geo2018, stats: dict) -> pd.DataFrame:
    src = read_csv(shared / "geo" / "etalab-decoupage-administratif-6.0.0__communes.csv")
    epm = read_csv(shared / "geo" / "etalab-decoupage-administratif-6.0.0__epci_membres.csv")

    cur = src[src["type"] == "commune-actuelle"].copy()
    assert not cur["code_commune"].duplicated().any()
    current_codes = set(cur["code_commune"])
    # Codes that are both a commune-actuelle and a commune-deleguee (the chef-lieu of a
    # commune nouvelle keeps its code): one row, the commune-actuelle.
    others = src[(src["type"] != "commune-actuelle") & ~src["code_commune"].isin(current_codes)]
    others = others.copy()
    assert not others["code_commune"].duplicated().any(), "duplicate old codes"
    stats["communes_deleguees_same_code_as_current"] = int(
        ((src["type"] != "commune-actuelle") & src["code_commune"].isin(current_codes)).sum()
    )

    cur["current_code"] = cur["code_commune"]
    cur["current_code_source"] = "self"
    is_arr = others["type"] == "arrondissement-municipal"
    others["current_code"] = np.where(
        is_arr, others["code_commune"].map(arrondissement_city), others["chef_lieu"]
    )
    others["current_code_source"] = np.where(is_arr, "arrondissement", "chef_lieu")
    # chef_lieu must be a current commune (follow chains if any)
    old_to_cur = dict(zip(others["code_commune"], others["current_code"], strict=True))
    resolved = []
    for code in others["current_code"]:
        seen = 0
        while code not in current_codes and code in old_to_cur and seen < 5:
            code, seen = old_to_cur[code], seen + 1
        assert code in current_codes, f"chef-lieu {code} is not a current commune"
        resolved.append(code)
    others["current_code"] = resolved

    table = pd.concat([cur, others], ignore_index=True)
    table["merged"] = table["type"].isin(["commune-deleguee", "commune-associee"])
    code_to_current = dict(zip(table["code_commune"], table["current_code"], strict=True))

    cc = CurrentCommunes(cur, geo)

    # Accuracy of the spatial method, measured on the 2018 codes whose answer is known
    # (communes déléguées/associées present in the 2018 geometry): leave-one-out.
    known = sorted(c for c in others.loc[~is_arr, "code_commune"] if c in geo.index)
    hits = 0
    for code in known:
        truth = code_to_current.pop(code)
        guess, _ = choose_current(code, geo, code_to_current, cc)
        code_to_current[code] = truth
        hits += guess == truth
    stats["spatial_method_check"] = f"{hits}/{len(known)} known old codes recovered"

    # 2018 codes absent from the 2026 list: spatial mapping, iterated so that an absent
    # code can lean on a neighbour mapped in a previous round.
    absent = sorted(set(geo.codes) - set(table["code_commune"]))
    mapped: dict[str, tuple[str, str]] = {}
    pending = list(absent)
    for _ in range(len(absent) + 1):
        remaining = []
        for code in pending:
            scores = geo.border_scores(code, code_to_current)
            if not scores and any(
                n in pending and n != code
                for n in (geo.codes[i] for i in geo.tree.query(geo.geoms[geo.index[code]]))
            ):
                remaining.append(code)  # wait for an absent neighbour to be mapped
                continue
            target, method = choose_current(code, geo, code_to_current, cc)
            mapped[code] = (target, method)
            if target:
                code_to_current[code] = target
        if not remaining or len(remaining) == len(pending):
            for code in remaining:
                target, method = choose_current(code, geo, code_to_current, cc)
                mapped[code] = (target, method)
                if target:
                    code_to_current[code] = target
            break
        pending = remaining
    rows = []
    for code in absent:
        target, method = mapped[code]
        rows.append(
            {
                "code_commune": code,
                "nom": geo.names.get(code),
                "type": "ancienne-commune",
                "current_code": target,
                "current_code_source": method,
                "merged": True,
            }
        )
    stats["absent_2018_codes"] = len(absent)
    stats["absent_2018_methods"] = dict(
        sorted(pd.Series([m for _, m in mapped.values()]).value_counts().to_dict().items())
    )
    table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)

    # Département / région of non-current rows: those of the current commune (etalab
    # already does so for déléguées/associées; needed for the absent 2018 codes).
    by_cur = cur.set_index("code_commune")
    need = table["type"] == "ancienne-commune"
    for col in ("code_departement", "code_region", "zone"):
        table.loc[need, col] = table.loc[need, "current_code"].map(by_cur[col])

    # EPCI (via the current commune, so old codes and arrondissements get the city's EPCI)
    epci_of = epm.drop_duplicates("code_commune").set_index("code_commune")
    table["epci_siren"] = table["current_code"].map(epci_of["siren_epci"])
    table["epci_nom"] = table["current_code"].map(epci_of["nom_epci"])

    # Centroids
    members: dict[str, list[str]] = defaultdict(list)
    for code, target in zip(table["code_commune"], table["current_code"], strict=True):
        if code in geo.index and target:
            members[target].append(code)
    points: dict[str, tuple[float, float] | None] = {}
    sources: dict[str, str | None] = {}
    for code in cur["code_commune"]:
        if code in geo.centroids:
            points[code], sources[code] = geo.centroids[code], "2018"
        elif members.get(code):
            union = shapely.union_all([geo.geoms[geo.index[m]] for m in sorted(members[code])])
            pt = shapely.point_on_surface(union)
            points[code] = (round(pt.x, 5), round(pt.y, 5))
            sources[code] = "2018-members"
        else:
            points[code], sources[code] = None, None
    lons, lats, srcs = [], [], []
    for code, target, typ in zip(table["code_commune"], table["current_code"], table["type"], strict=True):
        if typ == "commune-actuelle":
            pt, src_ = points[code], sources[code]
        elif code in geo.centroids:
            pt, src_ = geo.centroids[code], "2018"
        else:
            pt = points.get(target)
            src_ = "current" if pt else None
        lons.append(pt[0] if pt else None)
        lats.append(pt[1] if pt else None)
        srcs.append(src_)
    table["centroid_lon"], table["centroid_lat"], table["centroid_source"] = lons, lats, srcs

    is_cur = table["type"] == "commune-actuelle"
    stats["current_communes"] = int(is_cur.sum())
    stats["current_without_centroid"] = int((is_cur & table["centroid_lon"].isna()).sum())
    stats["current_without_centroid_non_com"] = int(
        (is_cur & table["centroid_lon"].isna() & (table["zone"] != "com")).sum()
    )
    stats["current_centroid_from_members"] = int(
        (is_cur & (table["centroid_source"] == "2018-members")).sum()
    )
    stats["current_without_epci"] = int((is_cur & table["epci_siren"].isna()).sum())
    table = table.sort_values("code_commune", kind="stable").reset_index(drop=True)
    assert not table["code_commune"].duplicated().any()
    return table


COMMUNE_SCHEMA = {
    "code_commune": "str",
    "nom": "str",
    "type": "str",
    "code_departement": "str",
    "code_region": "str",
    "siren_commune": "str",
    "codes_postaux": "str",
    "population": "int",
    "zone": "str",
    "epci_siren": "str",
    "epci_nom": "str",
    "current_code": "str",
    "current_code_source": "str",
    "merged": "bool",
    "centroid_lon": "float",
    "centroid_lat": "float",
    "centroid_source": "str",
}


def build_postcodes(communes: pd.DataFrame) -> pd.DataFrame:
    cur = communes[communes["type"] == "commune-actuelle"]
    rows = []
    for code, cps, pop in zip(cur["code_commune"], cur["codes_postaux"], cur["population"], strict=True):
        if not isinstance(cps, str) or not cps:
            continue
        for cp in sorted(set(cps.split("|"))):
            rows.append({"postcode": cp, "code_commune": code, "population": pop})
    out = pd.DataFrame(rows).sort_values(["postcode", "code_commune"], kind="stable")
    return out.reset_index(drop=True)


def build_epci(shared: Path) -> pd.DataFrame:
    epm = read_csv(shared / "geo" / "etalab-decoupage-administratif-6.0.0__epci_membres.csv")
    epci = epm.drop_duplicates("siren_epci").rename(
        columns={
            "nom_epci": "nom",
            "population_municipale_epci": "population",
            "population_totale_epci": "population_totale",
        }
    )
    counts = epm.groupby("siren_epci").size()
    epci["nb_communes"] = epci["siren_epci"].map(counts)
    return epci.sort_values("siren_epci", kind="stable").reset_index(drop=True)


# --- nomenclatures ------------------------------------------------------------------------


def build_cpv(shared: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    src = read_csv(shared / "nomenclatures" / "cpv_2008_fr_en.csv")
    cpv = pd.DataFrame(
        {
            "code_cpv": src["code_cpv"],
            "code8": src["code_cpv_8"],
            "libelle_fr": src["libelle_fr"],
            "label_en": src["label_en"],
            "division": src["code_cpv_8"].str[:2],
            "groupe": src["code_cpv_8"].str[:3],
            "classe": src["code_cpv_8"].str[:4],
        }
    )
    assert cpv["code8"].str.fullmatch(r"\d{8}").all()
    assert cpv["code_cpv"].str.fullmatch(r"\d{8}-\d").all()
    cpv = cpv.sort_values("code8", kind="stable").reset_index(drop=True)
    div = cpv[cpv["code8"].str.endswith("000000")][["division", "libelle_fr", "label_en"]]
    return cpv, div.reset_index(drop=True)


def build_naf(shared: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    src = read_csv(shared / "nomenclatures" / "naf_rev2_5_niveaux.csv")
    naf = pd.DataFrame(
        {
            "naf": src["NIV5"],
            "naf_nodot": src["NIV5"].str.replace(".", "", regex=False),
            "naf_label": src["Libelle-NIV5"],
            "classe": src["NIV4"],
            "classe_label": src["Libelle-NIV4"],
            "groupe": src["NIV3"],
            "groupe_label": src["Libelle-NIV3"],
            # the source writes divisions >= 10 as "10.0", "62.0": keep the 2 digits
            "division": src["NIV5"].str[:2],
            "division_label": src["Libelle-NIV2"],
            "section": src["NIV1"],
            "section_label": src["Libelle-NIV1"],
        }
    )
    assert naf["naf"].str.fullmatch(r"\d\d\.\d\d[A-Z]").all()
    assert (src["NIV2"].str[:2] == naf["division"]).all()
    assert (naf["groupe"].str[:2] == naf["division"]).all()
    naf = naf.sort_values("naf", kind="stable").reset_index(drop=True)

    n25 = read_csv(shared / "nomenclatures" / "naf_2025_sous_classes.csv")
    n25 = n25[["niv5", "niv5_libelle", "niv4", "niv3", "niv2", "niv1", "niv1_libelle"]].copy()
    n25.insert(1, "niv5_nodot", n25["niv5"].str.replace(".", "", regex=False))
    n25 = n25.sort_values("niv5", kind="stable").reset_index(drop=True)
    return naf, n25


COOPERATIVE_BANKS_AND_MUTUAL_CREDIT = {
    # Cooperative banks / mutual credit institutions (legally cooperatives) whose label
    # does not contain "coopérative".
    "5191": "Société de caution mutuelle",
    "5193": "Caisse de crédit maritime mutuel",
    "5194": "Caisse (fédérale) de crédit mutuel",
    "6100": "Caisse d'Épargne et de Prévoyance",
    "6595": "Caisse locale de crédit mutuel",
    "6596": "Caisse de crédit agricole mutuel",
}
SICA = {"5432", "5532", "5632", "6532"}  # sociétés d'intérêt collectif agricole
MUTUELLES = {"6411", "8210", "8250", "8290"}


def ess_family(code: str, label: str) -> str | None:
    """ESS family of a catégorie juridique (rule documented in data/README.md)."""
    low = normalize_name(label)
    if code.startswith("92"):
        return "association"
    if code.startswith("93"):
        return "fondation"
    if code in MUTUELLES:
        return "mutuelle"
    if "COOPERATIV" in low or code in COOPERATIVE_BANKS_AND_MUTUAL_CREDIT or code in SICA:
        return "cooperative"
    if "UNION D ECONOMIE SOCIALE" in low:
        return "union_economie_sociale"
    return None


def build_categories(shared: Path) -> pd.DataFrame:
    nom = shared / "nomenclatures"
    n1 = read_csv(nom / "categories_juridiques_niv1__data-fair-processing-sirene.csv")
    n2 = read_csv(nom / "categories_juridiques_niv2__data-fair-processing-sirene.csv")
    n3 = read_csv(nom / "categories_juridiques_niv3__data-fair-processing-sirene.csv")
    lab1 = dict(zip(n1["Code"], n1["Libellé"].str.strip(), strict=True))
    lab2 = dict(zip(n2["Code"], n2["Libellé"].str.strip(), strict=True))
    out = pd.DataFrame({"code": n3["Code"].str.strip(), "libelle": n3["Libellé"].str.strip()})
    out["libelle"] = out["libelle"].str.replace(r"\s+", " ", regex=True)
    assert out["code"].str.fullmatch(r"\d{4}").all()
    out["niv2_code"] = out["code"].str[:2]
    out["niv2_libelle"] = out["niv2_code"].map(lab2)
    out["niv1_code"] = out["code"].str[:1]
    out["niv1_libelle"] = out["niv1_code"].map(lab1)
    out["ess_family"] = [ess_family(c, lab) for c, lab in zip(out["code"], out["libelle"], strict=True)]
    return out.sort_values("code", kind="stable").reset_index(drop=True)


# --- SIAE ------------------------------------------------------------------------------------


def build_siae(shared: Path, communes: pd.DataFrame, postcodes: pd.DataFrame, geo: Geo2018, stats: dict):
    src = read_csv(shared / "inclusion" / "le-marche__fixtures_siaes.csv")
    naf = src["naf"].str.strip().str.upper()
    naf = naf.where(~naf.str.fullmatch(r"\d{4}[A-Z]"), naf.str[:2] + "." + naf.str[2:])
    siae = pd.DataFrame(
        {
            "siret": src["siret"].str.replace(r"\s", "", regex=True),
            "name": src["name"],
            "brand": src["brand"],
            "kind": src["kind"],
            "legal_form": src["legal_form"],
            "naf": naf,
            "address": src["address"],
            "post_code": src["post_code"].str.strip().str.zfill(5),
            "city": src["city"],
            "departement": src["department"],
            "longitude": pd.to_numeric(src["longitude"], errors="coerce"),
            "latitude": pd.to_numeric(src["latitude"], errors="coerce"),
            "labels": src["labels"],
            "source": src["source"],
        }
    )
    cur = communes[communes["type"] == "commune-actuelle"]
    cur_name = dict(zip(cur["code_commune"], cur["nom"].map(normalize_name), strict=True))
    cur_pop = dict(zip(cur["code_commune"], cur["population"], strict=True))
    # current and former names (déléguées, arrondissements, 2018 codes) -> current communes
    by_name: dict[str, set[str]] = defaultdict(set)
    for name, target in zip(communes["nom"], communes["current_code"], strict=True):
        if isinstance(name, str) and target:
            by_name[normalize_name(name)].add(target)
    dep_of = dict(zip(cur["code_commune"], cur["code_departement"], strict=True))
    by_cp = postcodes.groupby("postcode")["code_commune"].apply(list).to_dict()

    # Point in polygon of the coordinates (2018 polygons -> current commune)
    to_current = dict(zip(communes["code_commune"], communes["current_code"], strict=True))
    has_xy = siae["longitude"].notna() & siae["latitude"].notna()
    pip: list[str | None] = [None] * len(siae)
    xy_rows = np.flatnonzero(has_xy.to_numpy())
    points = shapely.points(siae.loc[has_xy, "longitude"].to_numpy(), siae.loc[has_xy, "latitude"].to_numpy())
    found = geo.tree.query(points, predicate="within")
    for p_i, g_i in sorted(zip(found[0].tolist(), found[1].tolist(), strict=True)):
        row = int(xy_rows[p_i])
        if pip[row] is None:
            pip[row] = to_current.get(geo.codes[g_i])

    def pop(code):
        value = cur_pop.get(code)
        return -1 if value is None or pd.isna(value) else int(value)

    def most_populated(codes_):
        return max(sorted(codes_), key=lambda c: pop(c))

    codes, methods = [], []
    for cp, city, dep, xy_code in zip(siae["post_code"], siae["city"], siae["departement"], pip, strict=True):
        city_n = normalize_name(city)
        city_n = re.sub(r" \d+( ?(E|ER|EME))?( ARRONDISSEMENT)?$", "", city_n)
        cands = sorted(set(by_cp.get(cp, [])))
        named = by_name.get(city_n, set())
        same = [c for c in cands if cur_name.get(c) == city_n]
        formerly = [c for c in cands if c in named]
        in_dep = [c for c in named if dep_of.get(c) == cp_dep(cp, dep)]
        if same:
            code, method = same[0], "postcode+name"
        elif formerly:
            code, method = formerly[0], "postcode+former-name"
        elif xy_code and xy_code in named:
            code, method = xy_code, "coordinates+name"
        elif len(cands) == 1:
            code, method = cands[0], "postcode-unique"
        elif xy_code and xy_code in cands:
            code, method = xy_code, "postcode+coordinates"
        elif cands:
            code, method = most_populated(cands), "postcode-most-populated"
        elif in_dep:
            code, method = most_populated(in_dep), "name-in-departement"
        elif xy_code:
            code, method = xy_code, "coordinates"
        else:
            code, method = None, "unresolved"
        codes.append(code)
        methods.append(method)
    siae["code_commune"] = codes
    siae["commune_match"] = methods
    counts = pd.Series(methods).value_counts()
    stats["siae_rows"] = len(siae)
    stats["siae_resolution"] = {k: int(v) for k, v in sorted(counts.items())}
    resolved = int(siae["code_commune"].notna().sum())
    stats["siae_resolved_rate"] = f"{resolved}/{len(siae)} = {resolved / len(siae):.1%}"
    stats["siae_duplicate_sirets"] = int(siae["siret"].duplicated().sum())
    return siae


def cp_dep(postcode: str, dep: str) -> str:
    """Département of a SIAE row (the 'department' column, else from the postcode)."""
    if dep:
        return dep
    if postcode.startswith("97"):
        return postcode[:3]
    if postcode.startswith("20"):
        return "2A" if postcode < "20200" else "2B"
    return postcode[:2]


# --- territories ----------------------------------------------------------------------------


def build_territories(shared: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    geo = shared / "geo"
    dep = read_csv(geo / "etalab-decoupage-administratif-6.0.0__departements.csv")
    reg = read_csv(geo / "etalab-decoupage-administratif-6.0.0__regions.csv")
    dep = dep.rename(columns={"code_departement": "code"})
    reg = reg.rename(columns={"code_region": "code"})
    dep = dep[["code", "nom", "code_region", "chef_lieu", "zone"]]
    reg = reg[["code", "nom", "chef_lieu", "zone"]]
    return (
        dep.sort_values("code", kind="stable").reset_index(drop=True),
        reg.sort_values("code", kind="stable").reset_index(drop=True),
    )


def inset_transform(geom, lon: float, lat: float):
    """Scale and move ``geom`` into the inset box centred on (lon, lat)."""
    minx, miny, maxx, maxy = geom.bounds
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    width_km = (maxx - minx) * math.cos(math.radians(cy))
    height = maxy - miny
    scale = INSET_FILL * INSET_BOX_H / max(height, width_km)
    # x scaled so that shapes keep their true proportions at the destination latitude
    a = scale * math.cos(math.radians(cy)) / math.cos(math.radians(lat))
    return [a, 0.0, 0.0, scale, lon - a * cx, lat - scale * cy], scale


def inset_box(lon: float, lat: float):
    """The frame of an inset: the territory fills INSET_FILL of its height."""
    half_h = INSET_BOX_H / 2 / INSET_FILL
    half_w = half_h / math.cos(math.radians(lat))
    return shapely.box(lon - half_w, lat - half_h, lon + half_w, lat + half_h)


def build_geometry(shared: Path, out: Path, deps: pd.DataFrame, stats: dict) -> None:
    geo = shared / "geo"
    src = gpd.read_file(geo / "france-geojson__departements-avec-outre-mer.geojson")
    src = src.sort_values("code", kind="stable").reset_index(drop=True)
    src_reg = gpd.read_file(geo / "france-geojson__regions-avec-outre-mer.geojson")
    reg_names = dict(zip(src_reg["code"], src_reg["nom"], strict=True))
    dep_region = dict(zip(deps["code"], deps["code_region"], strict=True))
    assert shapely.coverage_is_valid(np.asarray(src.geometry.values))

    simplified = np.asarray(src.geometry.simplify_coverage(TOL_DEPARTEMENTS).values)
    codes = src["code"].tolist()
    names = src["nom"].tolist()

    def regions_from(geoms):
        groups: dict[str, list] = defaultdict(list)
        for code, geom in zip(codes, geoms, strict=True):
            groups[dep_region[code]].append(geom)
        reg_codes = sorted(groups)
        unions = [shapely.coverage_union_all(groups[r]) for r in reg_codes]
        return reg_codes, unions

    # Plain files (real positions)
    dep_geoms = prepare_geoms(simplified)
    write_geojson(
        [{"code": c, "nom": n} for c, n in zip(codes, names, strict=True)],
        dep_geoms,
        out / "departements.geojson",
    )
    reg_codes, reg_unions = regions_from(simplified)
    reg_geoms = prepare_geoms(reg_unions)
    write_geojson([{"code": r, "nom": reg_names[r]} for r in reg_codes], reg_geoms, out / "regions.geojson")
    # Check: the dissolved régions match the source régions (area of symmetric difference)
    src_reg = src_reg.set_index("code")
    worst = max(
        float(
            shapely.area(shapely.symmetric_difference(g, src_reg.geometry[r]))
            / shapely.area(src_reg.geometry[r])
        )
        for r, g in zip(reg_codes, reg_unions, strict=True)
    )
    stats["regions_vs_source_max_symdiff"] = f"{worst:.3%}"

    # Inset files: overseas re-simplified at tolerance / scale, then moved into the boxes
    inset_geoms = list(simplified)
    inset_flags = [False] * len(codes)
    boxes = []
    for i, code in enumerate(codes):
        if code not in INSETS:
            continue
        _reg, lon, lat = INSETS[code]
        matrix, scale = inset_transform(src.geometry[i], lon, lat)
        fine = shapely.coverage_simplify(
            np.asarray([src.geometry[i]], dtype=object), TOL_DEPARTEMENTS / scale
        )[0]
        inset_geoms[i] = shapely.affinity.affine_transform(fine, matrix)
        inset_flags[i] = True
        boxes.append(({"code": code, "nom": names[i]}, inset_box(lon, lat)))
    dep_inset = prepare_geoms(inset_geoms)
    write_geojson(
        [{"code": c, "nom": n, "inset": f} for c, n, f in zip(codes, names, inset_flags, strict=True)],
        dep_inset,
        out / "departements_inset.geojson",
    )
    reg_codes_i, reg_unions_i = regions_from(inset_geoms)
    inset_regions = {v[0] for v in INSETS.values()}
    write_geojson(
        [{"code": r, "nom": reg_names[r], "inset": r in inset_regions} for r in reg_codes_i],
        prepare_geoms(reg_unions_i),
        out / "regions_inset.geojson",
    )
    write_geojson(
        [p for p, _ in boxes],
        [shapely.orient_polygons(b, exterior_cw=True) for _, b in boxes],
        out / "inset_boxes.geojson",
    )
    stats["geometry_valid"] = bool(shapely.is_valid(dep_geoms).all() and shapely.is_valid(reg_geoms).all())


def _simplify_departement(wkbs: list[bytes]) -> tuple[list[bytes], bool]:
    """Coverage-clean, coverage-simplify and round the communes of one département."""
    geoms = shapely.from_wkb(np.asarray(wkbs, dtype=object))
    cleaned = shapely.coverage_clean(geoms, gap_width=GAP_COMMUNES)
    simplified = shapely.coverage_simplify(cleaned, TOL_COMMUNES)
    simplified = shapely.set_precision(simplified, GRID)
    # Rounding to the grid can leave a few tiny overlaps: clean again (no snapping)
    valid = bool(shapely.coverage_is_valid(simplified))
    for _ in range(3):
        if valid:
            break
        simplified = shapely.coverage_clean(simplified, snapping_distance=0.0)
        simplified = shapely.set_precision(simplified, GRID)
        valid = bool(shapely.coverage_is_valid(simplified))
    return shapely.to_wkb(simplified).tolist(), valid


def build_communes_geo(geo: Geo2018, communes: pd.DataFrame, out: Path, stats: dict) -> None:
    gdf = geo.gdf
    result = np.empty(len(gdf), dtype=object)
    invalid_deps = []
    deps = sorted(gdf["departement"].unique())
    groups = [np.flatnonzero((gdf["departement"] == dep).to_numpy()) for dep in deps]
    jobs = [shapely.to_wkb(geo.geoms[idx]).tolist() for idx in groups]
    # One process per CPU: départements are independent, results do not depend on order.
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        done = list(pool.map(_simplify_departement, jobs))
    for dep, idx, (wkbs, valid) in zip(deps, groups, done, strict=True):
        result[idx] = shapely.from_wkb(np.asarray(wkbs, dtype=object))
        if not valid:
            invalid_deps.append(dep)
    stats["communes_geo_departements_not_clean_coverage"] = invalid_deps
    empty = shapely.is_empty(result) | pd.isna(result)
    # Fallback (should not happen): keep the source polygon
    result[empty] = geo.geoms[empty]
    stats["communes_geo_fallback_to_source"] = int(empty.sum())
    result = prepare_geoms(result)
    current = dict(zip(communes["code_commune"], communes["current_code"], strict=True))
    dep_of = dict(zip(communes["code_commune"], communes["code_departement"], strict=True))
    frame = gpd.GeoDataFrame(
        {
            "code_commune": gdf["code"].astype(object),
            "nom": gdf["nom"].astype(object),
            "code_departement": gdf["departement"].astype(object),
            "current_code": gdf["code"].map(current).astype(object),
            "current_code_departement": gdf["code"].map(current).map(dep_of).astype(object),
        },
        geometry=gpd.GeoSeries(result, crs="EPSG:4326"),
    )
    frame.to_parquet(out / "communes_geo.parquet", compression="zstd", index=False)
    stats["communes_geo_rows"] = len(frame)
    stats["communes_geo_invalid"] = int((~shapely.is_valid(result)).sum())
    stats["communes_geo_without_current"] = int(frame["current_code"].isna().sum())


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="shared data dir")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output dir")
    args = parser.parse_args(argv)
    shared, out = args.shared.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    stats: dict = {}
    print(f"Reading {shared}")

    geo = Geo2018(shared)
    communes = build_communes(shared, geo, stats)
    write_parquet(communes, out / "communes.parquet", COMMUNE_SCHEMA)

    postcodes = build_postcodes(communes)
    write_parquet(
        postcodes,
        out / "postcodes.parquet",
        {"postcode": "str", "code_commune": "str", "population": "int"},
    )
    epci = build_epci(shared)
    write_parquet(
        epci,
        out / "epci.parquet",
        {
            "siren_epci": "str",
            "nom": "str",
            "type_epci": "str",
            "mode_financement": "str",
            "population": "int",
            "population_totale": "int",
            "nb_communes": "int",
        },
    )
    deps, regs = build_territories(shared)
    write_parquet(
        deps,
        out / "departements.parquet",
        {"code": "str", "nom": "str", "code_region": "str", "chef_lieu": "str", "zone": "str"},
    )
    write_parquet(
        regs,
        out / "regions.parquet",
        {"code": "str", "nom": "str", "chef_lieu": "str", "zone": "str"},
    )

    cpv, cpv_div = build_cpv(shared)
    write_parquet(cpv, out / "cpv.parquet", dict.fromkeys(cpv.columns, "str"))
    write_parquet(cpv_div, out / "cpv_divisions.parquet", dict.fromkeys(cpv_div.columns, "str"))
    naf, naf25 = build_naf(shared)
    write_parquet(naf, out / "naf.parquet", dict.fromkeys(naf.columns, "str"))
    write_parquet(naf25, out / "naf2025.parquet", dict.fromkeys(naf25.columns, "str"))
    cats = build_categories(shared)
    write_parquet(cats, out / "categories_juridiques.parquet", dict.fromkeys(cats.columns, "str"))

    siae = build_siae(shared, communes, postcodes, geo, stats)
    siae_schema = dict.fromkeys(siae.columns, "str")
    siae_schema.update(longitude="float", latitude="float")
    write_parquet(siae, out / "siae.parquet", siae_schema)

    build_geometry(shared, out, deps, stats)
    build_communes_geo(geo, communes, out, stats)

    # --- summary
    counts = {
        "communes.parquet": len(communes),
        "postcodes.parquet": len(postcodes),
        "epci.parquet": len(epci),
        "departements.parquet": len(deps),
        "regions.parquet": len(regs),
        "cpv.parquet": len(cpv),
        "cpv_divisions.parquet": len(cpv_div),
        "naf.parquet": len(naf),
        "naf2025.parquet": len(naf25),
        "categories_juridiques.parquet": len(cats),
        "siae.parquet": len(siae),
        "communes_geo.parquet": stats["communes_geo_rows"],
    }
    print(f"Reference data written to {out} in {time.time() - t0:.1f} s\n")
    print(f"{'file':34} {'rows':>8} {'size':>10}")
    geo_total = 0
    for path in sorted(out.iterdir()):
        if path.suffix not in (".parquet", ".geojson"):
            continue
        size = path.stat().st_size
        if path.suffix == ".geojson" or path.name == "communes_geo.parquet":
            geo_total += size
        rows = counts.get(path.name)
        if rows is None:
            rows = len(json.loads(path.read_text(encoding="utf-8"))["features"])
        print(f"{path.name:34} {rows:>8} {size / 1024:>8.0f} KB")
    print(f"{'geometry total':34} {'':>8} {geo_total / 1024:>8.0f} KB\n")
    for key, value in stats.items():
        if key != "communes_geo_rows":
            print(f"{key}: {value}")
    ess = cats["ess_family"].value_counts().sort_index().to_dict()
    print(f"categories_juridiques ess_family: {ess}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
