"""Checks on the reference data shipped in data/ref/ (built by scripts/build_refdata.py).

Reads only data/ref/: the shared source folder is not needed to run these tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

REF = Path(__file__).resolve().parents[1] / "data" / "ref"

pytestmark = pytest.mark.skipif(
    not (REF / "communes.parquet").exists(), reason="data/ref absent (run scripts/build_refdata.py)"
)

OVERSEAS_DEPS = {"971": "01", "972": "02", "973": "03", "974": "04", "976": "06"}
GEOMETRY_FILES = [
    "departements.geojson",
    "regions.geojson",
    "departements_inset.geojson",
    "regions_inset.geojson",
    "inset_boxes.geojson",
    "communes_geo.parquet",
]


def read(name: str) -> pd.DataFrame:
    return pd.read_parquet(REF / f"{name}.parquet")


@pytest.fixture(scope="module")
def communes() -> pd.DataFrame:
    return read("communes").set_index("code_commune", drop=False)


# --- communes -----------------------------------------------------------------------------


def test_communes_counts_and_types(communes):
    assert 36_000 < len(communes) < 39_000
    assert communes["code_commune"].is_unique
    counts = communes["type"].value_counts()
    assert 34_500 < counts["commune-actuelle"] < 35_500
    assert counts["arrondissement-municipal"] == 45
    assert counts["commune-deleguee"] > 1_000
    assert counts["commune-associee"] > 300
    assert counts["ancienne-commune"] > 0
    assert communes["code_commune"].str.fullmatch(r"[0-9][0-9AB][0-9]{3}").all()


def test_every_current_commune_has_departement_region_and_code(communes):
    cur = communes[communes["type"] == "commune-actuelle"]
    assert cur["code_departement"].notna().all()
    assert cur["code_region"].notna().all()
    assert (cur["current_code"] == cur["code_commune"]).all()
    assert not cur["merged"].any()
    # every row points to a current commune
    assert communes["current_code"].isin(set(cur["code_commune"])).all()
    # centroids: all metropolitan and DROM communes but a handful re-created since 2018
    drom_metro = cur[cur["zone"] != "com"]
    assert drom_metro["centroid_lon"].isna().sum() <= 10
    assert communes["centroid_lat"].dropna().between(-22, 52).all()


def test_corsica_and_overseas(communes):
    cur = communes[communes["type"] == "commune-actuelle"]
    deps = cur.groupby("code_departement")["code_region"].first()
    assert deps["2A"] == "94" and deps["2B"] == "94"
    for dep, reg in OVERSEAS_DEPS.items():
        assert deps[dep] == reg
        assert (cur["code_departement"] == dep).sum() >= 17
    assert communes.loc["2A004", "nom"] == "Ajaccio"
    assert communes.loc["97411", "code_region"] == "04"  # Saint-Denis (La Réunion)


def test_old_codes_map_to_current_commune(communes):
    # Anctoville (14011, in the COG 2018 geometry) is a commune déléguée of Aurseulles
    # (14581, created 2017 with a new code) in the etalab 2026 list.
    row = communes.loc["14011"]
    assert row["type"] == "commune-deleguee" and bool(row["merged"])
    assert row["current_code"] == "14581"
    assert row["current_code_source"] == "chef_lieu"
    assert row["centroid_lon"] == pytest.approx(-0.65, abs=0.2)
    # Champtoceaux (49069) -> Orée d'Anjou (49126)
    assert communes.loc["49069", "current_code"] == "49126"
    # Courcouronnes (91182) is in the 2018 geometry but absent from the 2026 list (merged
    # into Évry-Courcouronnes, 91228, in 2019 without a commune déléguée): spatial mapping.
    row = communes.loc["91182"]
    assert row["type"] == "ancienne-commune" and bool(row["merged"])
    assert row["current_code"] == "91228"
    assert row["code_departement"] == "91"
    # Olonne-sur-Mer and Château-d'Olonne -> Les Sables-d'Olonne (2019)
    assert communes.loc["85166", "current_code"] == "85194"
    assert communes.loc["85060", "current_code"] == "85194"


def test_arrondissements_municipaux(communes):
    assert communes.loc["75056", "type"] == "commune-actuelle"
    paris = communes[communes["code_commune"].str.match(r"751\d\d$")]
    assert len(paris) == 20
    assert (paris["current_code"] == "75056").all()
    assert communes.loc["75101", "type"] == "arrondissement-municipal"
    assert communes.loc["69381", "current_code"] == "69123"
    assert communes.loc["13201", "current_code"] == "13055"
    assert communes.loc["75101", "epci_siren"] == communes.loc["75056", "epci_siren"]


def test_postcodes():
    pc = read("postcodes")
    assert 30_000 < len(pc) < 45_000
    assert pc["postcode"].str.fullmatch(r"\d{5}").all()
    assert not pc.duplicated(["postcode", "code_commune"]).any()
    assert set(pc.loc[pc["postcode"] == "59000", "code_commune"]) == {"59350"}  # Lille
    assert "75056" in set(pc.loc[pc["postcode"] == "75015", "code_commune"])


def test_epci(communes):
    epci = read("epci")
    assert 1_200 < len(epci) < 1_300
    assert epci["siren_epci"].str.fullmatch(r"\d{9}").all()
    assert set(epci["type_epci"]) >= {"CC", "CA", "CU", "METRO"}
    cur = communes[communes["type"] == "commune-actuelle"]
    assert cur["epci_siren"].dropna().isin(set(epci["siren_epci"])).all()
    assert cur["epci_siren"].isna().sum() < 150  # islands without EPCI and the COM
    lille = epci.set_index("siren_epci").loc[communes.loc["59350", "epci_siren"]]
    assert "Lille" in lille["nom"]


def test_departements_regions():
    deps = read("departements").set_index("code")
    regs = read("regions").set_index("code")
    assert len(deps[deps["zone"] != "com"]) == 101
    assert len(regs[regs["zone"] != "com"]) == 18
    assert deps.loc["2A", "code_region"] == "94"
    for dep, reg in OVERSEAS_DEPS.items():
        assert deps.loc[dep, "code_region"] == reg
    assert regs.loc["11", "nom"] == "Île-de-France"


# --- nomenclatures ---------------------------------------------------------------------------


def test_cpv():
    cpv = read("cpv")
    assert 9_000 < len(cpv) < 10_000
    assert cpv["code_cpv"].str.fullmatch(r"\d{8}-\d").all()
    assert (cpv["code_cpv"].str[:8] == cpv["code8"]).all()
    assert (cpv["division"] == cpv["code8"].str[:2]).all()
    div = read("cpv_divisions").set_index("division")
    assert len(div) == 45
    assert "construction" in div.loc["45", "libelle_fr"].lower()
    assert "construction" in div.loc["45", "label_en"].lower()


def test_naf():
    naf = read("naf").set_index("naf")
    assert len(naf) == 732
    row = naf.loc["62.01Z"]
    assert row["section"] == "J" and row["division"] == "62" and row["naf_nodot"] == "6201Z"
    assert row["classe"] == "62.01" and row["groupe"] == "62.0"
    assert "programmation" in row["naf_label"].lower()
    n25 = read("naf2025")
    assert 700 < len(n25) < 800
    assert n25["niv5"].str.fullmatch(r"\d\d\.\d\d[A-Z]").all()


def test_categories_juridiques():
    cj = read("categories_juridiques").set_index("code")
    assert 250 < len(cj) < 270
    fam = cj["ess_family"]
    assert fam["9220"] == "association"
    assert fam["9300"] == "fondation"
    assert fam["8210"] == "mutuelle"
    assert fam["5458"] == "cooperative"  # SARL coopérative de production (SCOP)
    assert fam["6317"] == "cooperative"  # Société coopérative agricole
    assert pd.isna(fam["5710"])  # SAS
    assert pd.isna(fam["7210"])  # Commune
    assert cj.loc["9220", "niv1_code"] == "9" and cj.loc["9220", "niv2_code"] == "92"


def test_siae():
    siae = read("siae")
    assert len(siae) == 3853
    assert siae["siret"].str.fullmatch(r"\d{14}").all()
    kinds = siae["kind"].value_counts().to_dict()
    assert kinds == {"ACI": 1815, "EI": 944, "AI": 620, "ETTI": 299, "GEIQ": 172, "EA": 3}
    naf = siae["naf"].dropna()
    assert naf.str.fullmatch(r"\d\d\.\d\d[A-Z]").all()
    assert siae["code_commune"].notna().mean() > 0.98
    assert siae.loc[siae["siret"] == "80746931700018", "code_commune"].item() == "93063"


# --- geometry --------------------------------------------------------------------------------


def test_geometry_size():
    total = sum((REF / name).stat().st_size for name in GEOMETRY_FILES)
    assert total < 15 * 1024 * 1024
    assert (REF / "communes_geo.parquet").stat().st_size < 10 * 1024 * 1024


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("departements.geojson", 101),
        ("regions.geojson", 18),
        ("departements_inset.geojson", 101),
        ("regions_inset.geojson", 18),
    ],
)
def test_france_geometry(name, expected):
    gpd = pytest.importorskip("geopandas")
    shapely = pytest.importorskip("shapely")
    g = gpd.read_file(REF / name)
    assert len(g) == expected
    assert g["code"].is_unique
    assert g.geometry.is_valid.all()
    assert shapely.coverage_is_valid(g.geometry.values)
    overseas = set(OVERSEAS_DEPS) if expected == 101 else set(OVERSEAS_DEPS.values())
    corsica = {"2A", "2B"} if expected == 101 else {"94"}
    assert overseas <= set(g["code"]) and corsica <= set(g["code"])
    assert len(g[~g["code"].isin(overseas)]) == expected - 5
    # exterior rings clockwise (d3-geo / plotly convention)
    rings = [p.exterior for geom in g.geometry for p in getattr(geom, "geoms", [geom])]
    assert not any(r.is_ccw for r in rings)
    doc = json.loads((REF / name).read_text(encoding="utf-8"))
    first = doc["features"][0]["geometry"]["coordinates"]
    while isinstance(first[0], list):
        first = first[0]
    assert all(len(repr(v).split(".")[-1]) <= 4 for v in first)


@pytest.mark.parametrize("name", ["departements_inset.geojson", "regions_inset.geojson"])
def test_insets_are_west_of_brittany(name):
    gpd = pytest.importorskip("geopandas")
    g = gpd.read_file(REF / name)
    overseas = set(OVERSEAS_DEPS) if name.startswith("departements") else set(OVERSEAS_DEPS.values())
    ins = g[g["code"].isin(overseas)]
    assert len(ins) == 5 and ins["inset"].all()
    assert not g.loc[~g["code"].isin(overseas), "inset"].any()
    b = ins.bounds
    # a column of boxes over the Bay of Biscay, west / south-west of Brittany
    assert (b["minx"] >= -8).all() and (b["maxx"] <= -2.8).all()
    assert (b["miny"] >= 43.4).all() and (b["maxy"] <= 48.6).all()
    metro = g[~g["code"].isin(overseas)].union_all()
    assert not ins.intersects(metro).any()
    # the insets do not overlap each other
    geoms = list(ins.geometry)
    assert not any(a.intersects(c) for i, a in enumerate(geoms) for c in geoms[i + 1 :])


def test_communes_geometry(communes):
    gpd = pytest.importorskip("geopandas")
    g = gpd.read_parquet(REF / "communes_geo.parquet")
    assert 35_000 < len(g) < 36_000
    assert g.crs is not None and g.crs.to_epsg() == 4326
    assert list(g.columns[:4]) == ["code_commune", "nom", "code_departement", "current_code"]
    assert g.geometry.is_valid.all() and not g.geometry.is_empty.any()
    assert g["current_code"].notna().all()
    assert g["current_code"].isin(set(communes["code_commune"])).all()
    assert {"2A", "2B", "971", "972", "973", "974", "976"} <= set(g["code_departement"])
    assert g.loc[g["code_commune"] == "91182", "current_code"].item() == "91228"


@pytest.mark.parametrize("dep", ["59", "2A", "971", "75"])
def test_communes_geojson_of_one_departement(dep):
    """The map of one département's communes (read with pyarrow and shapely) carries the
    same communes and shapes as the geometry file read with geopandas."""
    gpd = pytest.importorskip("geopandas")
    from analytics import geo

    g = gpd.read_parquet(REF / "communes_geo.parquet")
    g = g[g["code_departement"] == dep]
    got = geo.communes_geojson(dep)
    assert [f["properties"]["code"] for f in got["features"]] == list(g["code_commune"])
    assert [f["properties"]["nom"] for f in got["features"]] == list(g["nom"])
    shapes = gpd.GeoDataFrame.from_features(got["features"], crs=4326).geometry
    assert shapes.geom_equals_exact(g.geometry.reset_index(drop=True), tolerance=1e-9).all()
