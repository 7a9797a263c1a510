"""Economic and carbon footprint of the spend: jobs supported, where, and emissions.

An input–output estimate, always given as a range with its method:

* **Direct jobs** = Σ spend (excl. VAT) by A38 branch × persons employed per € of output.
* **Indirect jobs (type I)** = e · (L − I) · f, with L = (I − A)⁻¹ the Leontief inverse of
  the domestic industry-by-industry coefficients of the INSEE TES (industry-technology
  assumption: A = D·B, B = U·diag(g)⁻¹ the input structure of each branch, D = V·diag(q)⁻¹
  the market shares of each branch in each product's domestic output).
* **Induced jobs (type II)**: the same model closed with households (a row of labour
  income per € of output, a column of household consumption of domestic output per € of
  income).
* **Regionalisation** with Flegg's location quotient (FLQ): only spend to suppliers
  located in the territory is local final demand; the regional coefficients are
  FLQ ∘ A, with λ = [log2(1 + Eʳ/Eⁿ)]^δ.
* **Carbon**: Σ spend (excl. VAT) by NAF sous-classe × intensity of French production
  (gCO2e/€ = kgCO2e/k€), a spend-based estimate.

Every table comes from ``data/io`` (built by ``scripts/build_iodata.py``) and can be
replaced by the user's own: ``load_model(io_dir=…, year=…)``, the environment variable
``EMPREINTE_IO_DIR`` or the setting ``footprint`` = ``{"io_dir": …, "year": …, "delta": …}``.
The expected columns are documented in ``data/README.md``.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from analytics import aggregates, fmt, indicators
from analytics.filters import Filters, Territory
from analytics.store import DATA_DIR

IO_DIR = DATA_DIR / "io"
DEFAULT_DELTA = 0.3
# δ of the low / central / high variants: a larger δ shrinks λ, so more of the supply
# chain is bought outside the territory (fewer local indirect jobs).
DELTAS = {"low": 0.4, "central": DEFAULT_DELTA, "high": 0.1}
VAT_RATE = 0.20  # TTC -> HT when only the TTC amount is known (standard rate)
JOBS_UNCERTAINTY = 0.15  # default; io_parameters.csv may override
TOP_EMITTERS = 20
RANGE = ("low", "central", "high")
CLH = ("central", "low", "high")  # order of the carbon intensity tuples
CARBON_LEVELS = {6: "naf", 5: "classe", 4: "groupe", 2: "division"}  # key length -> level

HOW_TO_READ = (
    "Les emplois sont des emplois soutenus, pas des emplois créés : une personne employée pendant "
    "un an (emploi·an) grâce à la dépense de la période. Directs : chez les fournisseurs payés ; "
    "indirects : chez leurs propres fournisseurs ; induits : par la consommation des salaires versés. "
    "Repères : en France, 1 M€ de production fait travailler environ 7 personnes pendant un an en "
    "moyenne (ThreeME 2015) ; pour les travaux publics, les repères publiés sont d'environ 7 emplois·an "
    "directs par M€ HT sur les chantiers (instruction de 1998, ratios 2007) et 8 emplois·an par M€ "
    "fournisseurs compris (FNTP). Le chiffre central est un ordre de grandeur : la fourchette "
    "(basse – haute) traduit les hypothèses du modèle, pas une marge statistique. Le carbone est une "
    "estimation monétaire (dépense × intensité moyenne du secteur du fournisseur) : elle situe les "
    "postes lourds, elle ne remplace pas un bilan des émissions fondé sur des quantités."
)

# ----------------------------------------------------------------------------------------
# Pure model functions (numpy)


def technical_coefficients(supply: np.ndarray, intermediate: np.ndarray) -> np.ndarray:
    """Industry-by-industry coefficients A = D·B (industry-technology assumption).

    ``supply[i, j]``: domestic output of product i by branch j (the make matrix
    transposed); ``intermediate[i, j]``: domestic product i used by branch j.
    """
    supply = np.asarray(supply, dtype=float)
    intermediate = np.asarray(intermediate, dtype=float)
    g = supply.sum(axis=0)  # branch output
    q = supply.sum(axis=1)  # product output
    b = intermediate / np.where(g > 0, g, 1.0)
    d = supply.T / np.where(q > 0, q, 1.0)
    return d @ b


def market_shares(supply: np.ndarray) -> np.ndarray:
    """D[j, i] = share of branch j in the domestic output of product i."""
    supply = np.asarray(supply, dtype=float)
    q = supply.sum(axis=1)
    return supply.T / np.where(q > 0, q, 1.0)


def leontief(a: np.ndarray) -> np.ndarray:
    """L = (I − A)⁻¹."""
    a = np.asarray(a, dtype=float)
    return np.linalg.inv(np.eye(a.shape[0]) - a)


def output_multipliers(a: np.ndarray) -> np.ndarray:
    """Type-I output multipliers: column sums of the Leontief inverse."""
    return leontief(a).sum(axis=0)


def flegg_lambda(regional_share: float, delta: float) -> float:
    """λ = [log2(1 + Eʳ/Eⁿ)]^δ (Flegg, Webber & Elliott 1995)."""
    if not 0 < regional_share <= 1:
        raise ValueError("La part régionale de l'emploi doit être dans ]0, 1].")
    return math.log2(1 + regional_share) ** delta


def flq(e_regional, e_national, delta: float) -> np.ndarray:
    """Flegg location quotients FLQ[i, j] for employment vectors by branch.

    SLQ_i = (E_iʳ/Eʳ)/(E_iⁿ/Eⁿ); CILQ_ij = SLQ_i/SLQ_j; FLQ_ij = min(1, λ·CILQ_ij) off the
    diagonal and min(1, λ·SLQ_i) on it (Flegg & Webber's convention).
    """
    er = np.asarray(e_regional, dtype=float)
    en = np.asarray(e_national, dtype=float)
    lam = flegg_lambda(er.sum() / en.sum(), delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        slq = np.where(en > 0, (er / er.sum()) / (en / en.sum()), 0.0)
        cilq = np.where(slq[None, :] > 0, slq[:, None] / slq[None, :], 0.0)
    np.fill_diagonal(cilq, slq)
    return np.minimum(1.0, lam * cilq)


def closed_inverse(a: np.ndarray, wage_row: np.ndarray, consumption_col: np.ndarray) -> np.ndarray:
    """Leontief inverse of the model closed with households (type II), n+1 × n+1."""
    n = a.shape[0]
    ab = np.zeros((n + 1, n + 1))
    ab[:n, :n] = a
    ab[n, :n] = wage_row
    ab[:n, n] = consumption_col
    return leontief(ab)


def jobs_effects(a, e, f, wage_row=None, consumption_col=None) -> dict:
    """Direct, indirect and induced jobs by branch of *demand* (vectors, n).

    ``e``: jobs per € of output; ``f``: final demand (€) by branch. The indirect (resp.
    induced) jobs of column j are those set off anywhere in the chain by the spend in j.
    """
    e, f = np.asarray(e, dtype=float), np.asarray(f, dtype=float)
    lmat = leontief(a)
    direct = e * f
    indirect = (e @ (lmat - np.eye(len(e)))) * f
    induced = None
    if wage_row is not None and consumption_col is not None:
        lbar = closed_inverse(a, wage_row, consumption_col)[: len(e), : len(e)]
        induced = (e @ (lbar - lmat)) * f
    return {"direct": direct, "indirect": indirect, "induced": induced}


# ----------------------------------------------------------------------------------------
# Tables


def io_dir_default(con: duckdb.DuckDBPyConnection | None = None) -> Path:
    """The folder of IO tables: setting ``footprint.io_dir``, else $EMPREINTE_IO_DIR, else data/io."""
    path = _settings(con).get("io_dir") if con is not None else None
    path = path or os.environ.get("EMPREINTE_IO_DIR")
    return Path(path) if path else IO_DIR


def preload(con: duckdb.DuckDBPyConnection) -> Model:
    """Load the IO model :func:`footprint` will use with the buyer's settings (it is cached
    per folder and year): the dashboard does it in the background when a process starts."""
    settings = _settings(con)
    return load_model(io_dir_default(con), settings.get("year"))


def available_years(io_dir: str | os.PathLike | None = None) -> list[int]:
    """TES years present in the folder (files tes_dom_A38_YYYY_supply.csv)."""
    folder = Path(io_dir) if io_dir else IO_DIR
    years = []
    for p in folder.glob("tes_dom_A38_*_supply.csv"):
        m = re.fullmatch(r"tes_dom_A38_(\d{4})_supply\.csv", p.name)
        if m and (folder / f"tes_dom_A38_{m.group(1)}_intermediate.csv").exists():
            years.append(int(m.group(1)))
    return sorted(years)


@dataclass(frozen=True)
class IOTable:
    """One year of the domestic TES turned into an industry-by-industry model."""

    year: int
    a: np.ndarray  # industry × industry technical coefficients
    output: np.ndarray  # branch output, M€
    consumption_col: np.ndarray | None  # household consumption of branch output per € of income
    multipliers: np.ndarray


@dataclass(frozen=True)
class Model:
    io_dir: Path
    year: int  # the central TES year
    branches: tuple[str, ...]
    labels: dict
    tables: dict  # year -> IOTable (every year available, for the range)
    jobs_per_eur: np.ndarray
    wages_per_eur: np.ndarray | None
    contrib_per_eur: np.ndarray | None
    params: dict
    naf_division: dict  # '62' -> 'JC'
    cpv: dict  # prefix -> branch
    carbon: dict  # NAF code or prefix -> (central, low, high) gCO2e/€
    carbon_branch: dict  # branch -> mean (central, low, high)
    jobs_year: int = 2015
    carbon_year: int = 2022
    notes: list = field(default_factory=list)

    @property
    def table(self) -> IOTable:
        return self.tables[self.year]

    def index(self, branch: str) -> int:
        return self.branches.index(branch)


def _read_tes(folder: Path, year: int, branches: list[str]):
    s = pd.read_csv(folder / f"tes_dom_A38_{year}_supply.csv", index_col=0)
    u = pd.read_csv(folder / f"tes_dom_A38_{year}_intermediate.csv", index_col=0)
    supply = s.reindex(index=branches, columns=branches).fillna(0).to_numpy(float)
    inter = u.reindex(index=branches, columns=branches).fillna(0).to_numpy(float)
    p3 = None
    fu_path = folder / f"tes_dom_A38_{year}_final_uses.csv"
    if fu_path.exists():
        fu = pd.read_csv(fu_path, index_col=0)
        if "P3_households" in fu.columns:
            p3 = fu["P3_households"].reindex(branches).fillna(0).to_numpy(float)
    return supply, inter, p3


def _params(folder: Path) -> dict:
    p = folder / "io_parameters.csv"
    if not p.exists():
        return {}
    df = pd.read_csv(p)
    return {str(k): float(v) for k, v in zip(df["key"], df["value"])}


def _fingerprint(folder: Path) -> tuple:
    """Names, sizes and modification times of the folder's files: a replaced table
    invalidates the cached model."""
    if not folder.is_dir():
        return ()
    return tuple(
        sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    )


@lru_cache(maxsize=8)
def _load(folder: str, year: int | None, fingerprint: tuple = ()) -> Model:
    path = Path(folder)
    if not (path / "branches_a38.csv").exists():
        raise FileNotFoundError(
            f"Tables entrées-sorties introuvables dans {path} (lancer scripts/build_iodata.py)."
        )
    br = pd.read_csv(path / "branches_a38.csv", dtype=str)
    branches = br["branch"].tolist()
    labels = dict(zip(br["branch"], br["label_fr"]))
    years = available_years(path)
    if not years:
        raise FileNotFoundError(f"Aucune TES domestique A38 dans {path}.")
    year = year or max(years)
    if year not in years:
        raise ValueError(f"TES {year} absente de {path} : années disponibles {', '.join(map(str, years))}.")
    params = _params(path)
    propensity = None
    if params.get("household_income_2015_meur") and params.get("p3_households_domestic_2015_meur"):
        # consumption of domestic output per € of household income (2015), the level of
        # the households column; its product structure comes from each TES year.
        propensity = params["p3_households_domestic_2015_meur"] / params["household_income_2015_meur"]
    tables = {}
    for y in years:
        supply, inter, p3 = _read_tes(path, y, branches)
        a = technical_coefficients(supply, inter)
        hc = None
        if p3 is not None and propensity is not None and p3.sum() > 0:
            hc = market_shares(supply) @ p3 / p3.sum() * propensity
        tables[y] = IOTable(y, a, supply.sum(axis=0), hc, output_multipliers(a))

    jobs = pd.read_csv(path / "jobs_a38.csv").set_index("branch").reindex(branches)
    if jobs["jobs_per_meur"].isna().any():
        missing = jobs.index[jobs["jobs_per_meur"].isna()].tolist()
        raise ValueError(f"jobs_a38.csv : branches sans coefficient d'emploi {missing}.")
    e = jobs["jobs_per_meur"].to_numpy(float) / 1e6
    wages = jobs["wages_per_eur"].to_numpy(float) if "wages_per_eur" in jobs else None
    contrib = jobs["employer_contrib_per_eur"].to_numpy(float) if "employer_contrib_per_eur" in jobs else None
    if wages is not None and np.isnan(wages).any():
        wages = None
    if contrib is not None and np.isnan(contrib).any():
        contrib = None

    div = pd.read_csv(path / "naf_division_a38.csv", dtype=str)
    naf_division = dict(zip(div["division"].str.zfill(2), div["branch"]))
    cpv_df = pd.read_csv(path / "cpv_a38.csv", dtype=str)
    cpv = dict(zip(cpv_df["cpv_prefix"], cpv_df["branch"]))

    carbon = pd.read_csv(path / "carbon_naf.csv", dtype={"naf": str})
    carbon["naf"] = carbon["naf"].map(_norm_naf_key)
    for c in ("low", "high"):
        if c not in carbon:
            carbon[c] = carbon["central"]
        carbon[c] = carbon[c].fillna(carbon["central"])
    carbon = carbon.dropna(subset=["naf", "central"]).drop_duplicates("naf").set_index("naf")[list(RANGE)]
    carbon = carbon.astype(float)
    # division averages (simple mean of the sous-classes) where the table has no row for
    # the division itself: the fallback of a sous-classe missing from the table.
    sub = carbon[carbon.index.str.len() > 2]
    div_mean = sub.groupby(sub.index.str[:2]).mean()
    carbon = pd.concat([carbon, div_mean[~div_mean.index.isin(carbon.index)]])
    divisions = carbon[carbon.index.str.len() == 2]
    carbon_branch = divisions.assign(branch=divisions.index.map(naf_division)).dropna(subset=["branch"])
    carbon_branch = carbon_branch.groupby("branch")[list(RANGE)].mean()
    return Model(
        io_dir=path,
        year=year,
        branches=tuple(branches),
        labels=labels,
        tables=tables,
        jobs_per_eur=e,
        wages_per_eur=wages,
        contrib_per_eur=contrib,
        params=params,
        naf_division=naf_division,
        cpv=cpv,
        carbon=_as_tuples(carbon),
        carbon_branch=_as_tuples(carbon_branch),
        jobs_year=int(params.get("jobs_year", 2015)),
        carbon_year=int(params.get("carbon_year", 2022)),
    )


def _as_tuples(df: pd.DataFrame) -> dict:
    return {k: tuple(float(x) for x in v) for k, v in zip(df.index, df[list(CLH)].to_numpy())}


def load_model(io_dir: str | os.PathLike | None = None, year: int | None = None) -> Model:
    """The IO model from ``io_dir`` (default data/io or $EMPREINTE_IO_DIR), central TES ``year``
    (default: the latest available). Cached per (folder, year)."""
    folder = Path(io_dir) if io_dir else Path(os.environ.get("EMPREINTE_IO_DIR") or IO_DIR)
    folder = folder.resolve()
    return _load(str(folder), int(year) if year else None, _fingerprint(folder))


# ----------------------------------------------------------------------------------------
# Nomenclatures


def _norm_naf_key(code) -> str | None:
    """'6201Z', '62.01z', '62.01', '62' -> '62.01Z', '62.01', '62'."""
    if code is None or (isinstance(code, float) and math.isnan(code)):
        return None
    c = re.sub(r"[\s.]", "", str(code)).upper()
    if not c:
        return None
    if re.fullmatch(r"\d{4}[A-Z]", c):
        return f"{c[:2]}.{c[2:]}"
    if re.fullmatch(r"\d{3,4}", c):
        return f"{c[:2]}.{c[2:]}"
    if re.fullmatch(r"\d{2}", c):
        return c
    return c


def naf_to_a38(naf, model: Model | None = None) -> str | None:
    """A38 branch of a NAF code (sous-classe, classe or division): '62.01Z' -> 'JC'."""
    key = _norm_naf_key(naf)
    if not key or not key[:2].isdigit():
        return None
    mapping = (model or load_model()).naf_division
    return mapping.get(key[:2])


def cpv_to_a38(cpv, model: Model | None = None) -> str | None:
    """A38 branch of a CPV code by the longest prefix of data/io/cpv_a38.csv: '45233140' -> 'FZ'."""
    if cpv is None or (isinstance(cpv, float) and math.isnan(cpv)):
        return None
    digits = re.sub(r"\D", "", str(cpv))
    mapping = (model or load_model()).cpv
    for n in range(min(len(digits), 8), 1, -1):
        if digits[:n] in mapping:
            return mapping[digits[:n]]
    return None


def carbon_intensity(naf, model: Model | None = None, branch: str | None = None):
    """(central, low, high) gCO2e/€ for a NAF code, and the level used.

    Sous-classe, else classe, groupe, division (a row of the table or the mean of its
    sous-classes), else the mean of the branch (``branch``, e.g. from the CPV); else
    ``(None, None)``.
    """
    model = model or load_model()
    key = _norm_naf_key(naf)
    table = model.carbon
    if key and key[:2].isdigit():
        for k in dict.fromkeys([key, key[:5], key[:4], key[:2]]):
            if len(k) in CARBON_LEVELS and k in table:
                return table[k], CARBON_LEVELS[len(k)]
        branch = branch or model.naf_division.get(key[:2])
    if branch and branch in model.carbon_branch:
        return model.carbon_branch[branch], "branche"
    return None, None


# ----------------------------------------------------------------------------------------
# Spend


def _settings(con) -> dict:
    try:
        row = con.execute("SELECT value FROM settings WHERE key = 'footprint'").fetchone()
    except duckdb.Error:
        return {}
    if not row or row[0] is None:
        return {}
    value = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    return value if isinstance(value, dict) else {}


HT_EXPR = (
    "coalesce(m.amount_ht, CASE WHEN m.amount_basis = 'HT' THEN m.amount "
    f"ELSE m.amount / {1 + VAT_RATE} END)::DOUBLE"
)

# Each supplier's spend (CTE ``a``: supplier_key, raw_name, spend, spend_vat_estimated)
# with its class, joined once per supplier.
_PAID_CLASS_SELECT = """
SELECT a.supplier_key AS supplier_key,
       coalesce(sc.name, a.raw_name) AS name,
       sc.naf AS naf,
       sc.departement_code AS dep,
       {territory} AS in_territory,
       NULL::VARCHAR AS cpv,
       a.spend AS spend,
       a.spend_vat_estimated AS spend_vat_estimated
FROM a
LEFT JOIN supplier_class sc ON sc.supplier_key = a.supplier_key
"""

PAID_SQL = (
    """
WITH a AS (
    SELECT m.supplier_key,
           min(m.supplier_name) AS raw_name,
           sum({ht}) AS spend,
           sum(CASE WHEN m.amount_ht IS NULL AND m.amount_basis <> 'HT' THEN {ht} ELSE 0 END)
               AS spend_vat_estimated
    FROM mandats m
    WHERE m.spend_date BETWEEN $date_from AND $date_to {where}
    GROUP BY m.supplier_key
)"""
    + _PAID_CLASS_SELECT
)

# The same from the kept sums (analytics.aggregates, schema v6), when they give the same
# answer (``indicators.monthly_ok``: whole months, no filter on a line's service, nature or
# amount): a year of 10M lines is 100,000 supplier rows in mandats_yearly.
PAID_SUMS_SQL = (
    """
WITH a AS (
    SELECT m.supplier_key,
           min(m.raw_name) AS raw_name,
           sum(m.ht_known)::DOUBLE + sum(m.ttc_no_ht)::DOUBLE / {vat} AS spend,
           sum(m.ttc_no_ht)::DOUBLE / {vat} AS spend_vat_estimated
    FROM {table} m
    WHERE {period} {where}
    GROUP BY m.supplier_key
)"""
    + _PAID_CLASS_SELECT
)

NOTIFIED_SQL = """
WITH c AS (
    SELECT * FROM contracts_current
    WHERE date_notification BETWEEN $date_from AND $date_to {where}
), h AS (
    SELECT *, count(*) OVER (PARTITION BY import_id, seq) AS n_rows FROM contract_holders_current
), x AS (
    SELECT coalesce(h.holder_siret, 'NOM:' || upper(trim(h.holder_name)), 'INCONNU') AS supplier_key,
           h.holder_name, h.commune_code AS h_com, h.departement_code AS h_dep, h.region_code AS h_reg,
           c.cpv, c.amount::DOUBLE / coalesce(nullif(c.holder_count, 0), h.n_rows, 1) AS spend
    FROM c LEFT JOIN h ON h.import_id = c.import_id AND h.seq = c.seq
    WHERE c.amount IS NOT NULL
)
SELECT x.supplier_key,
       coalesce(max(sc.name), max(x.holder_name)) AS name,
       max(sc.naf) AS naf,
       coalesce(max(sc.departement_code), max(x.h_dep)) AS dep,
       {territory} AS in_territory,
       x.cpv AS cpv,
       sum(x.spend) AS spend,
       0.0 AS spend_vat_estimated
FROM x LEFT JOIN supplier_class sc ON sc.supplier_key = x.supplier_key
GROUP BY x.supplier_key, x.cpv
"""

# supplier_class column -> contract_holders column (the file's own location of a holder)
HOLDER_COLUMN = {"departement_code": "x.h_dep", "region_code": "x.h_reg", "commune_code": "x.h_com"}
SUPPLIER_CLASS_SQL = {
    "ess": "sc.ess",
    "inclusive": "sc.inclusive_family IS NOT NULL",
    "insertion": "sc.inclusive_family = 'insertion'",
    "handicap": "sc.inclusive_family = 'handicap'",
    "pme": "sc.size_class IN ('TPE', 'PME')",
}


def _territory_expr(t: Territory | None, notified: bool) -> str:
    if t is None:
        return "NULL::BOOLEAN"
    col = f"sc.{t.column}"  # whitelisted by Territory.column
    if not notified:  # one row per supplier (PAID_SQL joins the class after summing)
        return f"coalesce(list_contains($territory_codes, {col}), FALSE)"
    if t.column in HOLDER_COLUMN:
        col = f"coalesce({col}, {HOLDER_COLUMN[t.column]})"
    return f"coalesce(bool_or(list_contains($territory_codes, {col})), FALSE)"


def _filters_sql(f: Filters, notified: bool) -> tuple[str, dict, list[str]]:
    """Extra WHERE conditions, their parameters, and the filters not applicable here."""
    alias = "" if notified else "m."
    parts, params, ignored = [], {}, []
    if f.buyer_siret:
        parts.append(f"{alias}buyer_siret = $buyer_siret")
        params["buyer_siret"] = f.buyer_siret
    if f.amount_min is not None:
        parts.append(f"{alias}amount >= $amount_min")
        params["amount_min"] = f.amount_min
    if f.amount_max is not None:
        parts.append(f"{alias}amount <= $amount_max")
        params["amount_max"] = f.amount_max
    if notified:
        if f.cpv_divisions:
            parts.append("list_contains($cpv_divisions, cpv_division)")
            params["cpv_divisions"] = list(f.cpv_divisions)
        if f.procedures:
            parts.append("list_contains($procedures, procedure)")
            params["procedures"] = list(f.procedures)
        ignored += [n for n, v in (("services", f.services), ("natures", f.natures)) if v]
    else:
        if f.services:
            parts.append("list_contains($services, m.service)")
            params["services"] = list(f.services)
        if f.natures:
            ors = []
            for i, prefix in enumerate(f.natures):
                ors.append(f"starts_with(m.nature, $nature_{i})")
                params[f"nature_{i}"] = prefix
            parts.append("(" + " OR ".join(ors) + ")")
        ignored += [n for n, v in (("cpv_divisions", f.cpv_divisions), ("procedures", f.procedures)) if v]
    where = "".join(f" AND {p}" for p in parts)
    return where, params, ignored


def spend_rows(con: duckdb.DuckDBPyConnection, f: Filters) -> tuple[pd.DataFrame, list[str]]:
    """Spend excl. VAT by supplier (and CPV on the notified basis): supplier_key, name,
    naf, dep, in_territory, cpv, spend, spend_vat_estimated; and the ignored filters."""
    notified = f.basis == "notified"
    where, params, ignored = _filters_sql(f, notified)
    territory = _territory_expr(f.territory, notified)
    if not notified and indicators.monthly_ok(f) and aggregates.ready(con):
        # the same table and period as the indicators' spend (indicators.sums_source)
        table, _, period, p = indicators.sums_source(f)
        params.update(p)
        sql = PAID_SUMS_SQL.format(
            territory=territory, where=where, table=table, period=period, vat=1 + VAT_RATE
        )
    else:
        params.update({"date_from": f.date_from, "date_to": f.date_to})
        sql = (NOTIFIED_SQL if notified else PAID_SQL).format(territory=territory, where=where, ht=HT_EXPR)
    if f.territory is not None:
        params["territory_codes"] = list(f.territory.codes)
    df = indicators._long_df(con, sql, params)  # a row per supplier: 90,000 for a region
    if f.supplier_classes:
        df = _filter_classes(con, df, f)
    return df, ignored


def _filter_classes(con, df: pd.DataFrame, f: Filters) -> pd.DataFrame:
    """Keep suppliers of any of the selected classes (ess, inclusive, insertion, handicap, pme, local)."""
    conds = [SUPPLIER_CLASS_SQL[c] for c in f.supplier_classes if c in SUPPLIER_CLASS_SQL]
    keep = pd.Series(False, index=df.index)
    if conds:
        keys = {
            r[0]
            for r in con.execute(
                "SELECT supplier_key FROM supplier_class sc WHERE "
                + " OR ".join(f"coalesce({c}, FALSE)" for c in conds)
            ).fetchall()
        }
        keep |= df["supplier_key"].isin(keys)
    if "local" in f.supplier_classes:
        keep |= df["in_territory"].fillna(False).astype(bool)
    return df[keep]


# ----------------------------------------------------------------------------------------
# The footprint


def _range(low, central, high, digits: int = 1) -> dict:
    vals = [float(low), float(central), float(high)]
    lo, hi = min(vals), max(vals)
    return {"low": round(lo, digits), "central": round(vals[1], digits), "high": round(hi, digits)}


def _population_share(con, t: Territory) -> float | None:
    col = {"dep": "code_departement", "reg": "code_region", "epci": "epci_siren", "com": "code_commune"}[
        t.kind
    ]
    kinds = "" if t.kind == "com" else " AND type = 'commune-actuelle'"
    try:
        part = con.execute(
            f"SELECT sum(population) FROM ref_communes WHERE list_contains($codes, {col}){kinds}",
            {"codes": list(t.codes)},
        ).fetchone()[0]
        total = con.execute(
            "SELECT sum(population) FROM ref_communes WHERE type = 'commune-actuelle'"
        ).fetchone()[0]
    except duckdb.Error:
        return None
    if not part or not total:
        return None
    return min(1.0, float(part) / float(total))


def _regional_employment(model: Model, t: Territory) -> np.ndarray | None:
    """User-supplied employment by branch of the territory (regional_employment.csv), if any."""
    p = model.io_dir / "regional_employment.csv"
    if not p.exists():
        return None
    df = pd.read_csv(p, dtype={"territory": str, "branch": str})
    df = df[df["territory"].str.replace(" ", "") == str(t)]
    if df.empty:
        return None
    return df.groupby("branch")["employment"].sum().reindex(list(model.branches)).fillna(0).to_numpy(float)


def _distinct(fn, *columns: pd.Series) -> tuple[list, np.ndarray]:
    """``fn(*values)`` once per distinct tuple of values of the columns (missing values as
    None), and for each row the position of its tuple in that list (a year of a large
    buyer: 90,000 suppliers, a few hundred NAF × CPV pairs)."""
    n = len(columns[0])
    if not n:
        return [], np.zeros(0, dtype=np.int64)
    combined = np.zeros(n, dtype=np.int64)
    for col in columns:
        codes, uniques = pd.factorize(col)  # missing: -1
        combined = combined * (len(uniques) + 1) + (codes + 1)
    _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)

    def value(col: pd.Series, i: int):
        v = col.iloc[i]
        return None if v is None or (not isinstance(v, str) and pd.isna(v)) else v

    return [fn(*(value(col, int(i)) for col in columns)) for i in first], inverse.ravel()


def _per_distinct(fn, *columns: pd.Series) -> list:
    """``[fn(*values) for values in zip(*columns)]``, computed once per distinct tuple."""
    values, inverse = _distinct(fn, *columns)
    return [values[k] for k in inverse]


def _assign(rows: pd.DataFrame, model: Model) -> pd.DataFrame:
    """Branch (from the NAF, else the CPV), carbon intensities and their source for every row."""
    rows = rows.copy()

    def one(naf, cpv):
        b = naf_to_a38(naf, model)
        src = "naf" if b else None
        if b is None and isinstance(cpv, str):
            b = cpv_to_a38(cpv, model)
            src = "cpv" if b else None
        ci, lvl = carbon_intensity(naf if src == "naf" else None, model, branch=b)
        ci = ci or (np.nan, np.nan, np.nan)
        return (b, src, *ci, lvl)

    cols = ["branch", "branch_source", "ci_central", "ci_low", "ci_high", "carbon_level"]
    values, inverse = _distinct(one, rows["naf"], rows["cpv"])
    if values:
        # one row per distinct pair, spread to the rows by position (no 90,000 tuples)
        out = pd.DataFrame(values, columns=cols).take(inverse).set_axis(rows.index)
        for c in cols:
            rows[c] = out[c]
    else:
        for c in cols:
            rows[c] = pd.Series(dtype=object if c in ("branch", "branch_source", "carbon_level") else float)
    for c in ("ci_central", "ci_low", "ci_high"):
        rows[c] = rows[c].astype(float)
    return rows


def _demand(rows: pd.DataFrame, model: Model) -> tuple[np.ndarray, float, float]:
    """Final demand by branch (€), unclassified spend spread pro rata over the classified
    branches; returns (f, classified spend, unclassified spend)."""
    n = len(model.branches)
    f = np.zeros(n)
    classified = rows[rows["branch"].notna()]
    for b, s in classified.groupby("branch")["spend"].sum().items():
        f[model.index(b)] += s
    raw = float(f.sum())
    f = np.clip(f, 0, None)  # credit notes beyond a branch's purchases
    c = float(f.sum())
    u = float(rows.loc[rows["branch"].isna(), "spend"].sum())
    if c > 0 and u > 0:
        f = f * (1 + u / c)
    return f, raw, u


def _closures(model: Model) -> dict:
    """Household closure variants: labour income per € of output (low, central, high)."""
    if model.wages_per_eur is None:
        return {}
    w = model.wages_per_eur
    ratio = model.params.get("d11_over_threeme_wages", 1.0)
    out = {"low": w * ratio, "central": w, "high": w}
    if model.contrib_per_eur is not None:
        out["high"] = w + model.contrib_per_eur
    return out


def _effects_range(model: Model, f: np.ndarray, lam_matrix_by_delta: dict | None, hh_share: dict | None):
    """Jobs by branch of demand for every variant; returns {kind: {low/central/high: vector}}."""
    u = model.params.get("jobs_coefficient_uncertainty", JOBS_UNCERTAINTY)
    e = model.jobs_per_eur
    closures = _closures(model)
    out = {"direct": {}, "indirect": {}, "induced": {}}
    out["direct"] = {"low": e * f * (1 - u), "central": e * f, "high": e * f * (1 + u)}
    variants = {}
    for name in DELTAS:
        for y, tab in model.tables.items():
            flq_m = lam_matrix_by_delta[name] if lam_matrix_by_delta else 1.0
            a = tab.a * flq_m
            hc = None
            if tab.consumption_col is not None and closures:
                hc = tab.consumption_col * (hh_share[name] if hh_share else 1.0)
            variants[(name, y)] = (a, hc)
    ind, indu = {}, {}
    for key, (a, hc) in variants.items():
        name, y = key
        res = {}
        res["indirect"] = jobs_effects(a, e, f)["indirect"]
        if hc is not None:
            for cname, wrow in closures.items():
                res[("induced", cname)] = jobs_effects(a, e, f, wrow, hc)["induced"]
        ind[key], indu[key] = res["indirect"], {k[1]: v for k, v in res.items() if isinstance(k, tuple)}
    central_key = ("central", model.year)
    out["indirect"]["central"] = ind[central_key]
    lows = [v for (name, _), v in ind.items() if name == "low"]
    highs = [v for (name, _), v in ind.items() if name == "high"]
    out["indirect"]["low"] = min(lows, key=lambda v: v.sum()) * (1 - u)
    out["indirect"]["high"] = max(highs, key=lambda v: v.sum()) * (1 + u)
    if closures and all(indu.values()):
        out["induced"]["central"] = indu[central_key]["central"]
        lows = [d["low"] for (name, _), d in indu.items() if name == "low"]
        highs = [d["high"] for (name, _), d in indu.items() if name == "high"]
        out["induced"]["low"] = min(lows, key=lambda v: v.sum()) * (1 - u)
        out["induced"]["high"] = max(highs, key=lambda v: v.sum()) * (1 + u)
    else:
        out["induced"] = None
    return out


def _sum_range(vectors: dict | None, digits: int = 1) -> dict | None:
    if not vectors:
        return None
    return _range(vectors["low"].sum(), vectors["central"].sum(), vectors["high"].sum(), digits)


def _per_million(effects: dict, spend: float) -> dict | None:
    if spend <= 0:
        return None
    m = spend / 1e6

    def total(kinds, k):
        return sum(effects[x][k].sum() for x in kinds) / m

    out = {
        "direct": _range(*(total(["direct"], k) for k in RANGE), 2),
        "direct_indirect": _range(*(total(["direct", "indirect"], k) for k in RANGE), 2),
        "total": None,
    }
    if effects["induced"]:
        out["total"] = _range(*(total(["direct", "indirect", "induced"], k) for k in RANGE), 2)
    return out


def footprint(
    con: duckdb.DuckDBPyConnection,
    f: Filters,
    *,
    io_dir: str | os.PathLike | None = None,
    year: int | None = None,
    delta: float | None = None,
) -> dict:
    """Jobs supported and carbon of the spend of ``f`` (ranges, tables, method, coverage).

    Tables (``by_branch``, ``by_departement``, ``carbon_by_category``,
    ``carbon_top_suppliers``) are DataFrames; :func:`footprint_json` gives the same as
    plain JSON.
    """
    settings = _settings(con)
    folder = io_dir or io_dir_default(con)
    model = load_model(folder, year or settings.get("year"))
    delta = float(delta if delta is not None else settings.get("delta", DEFAULT_DELTA))
    if not 0 <= delta <= 1:
        raise ValueError("δ doit être compris entre 0 et 1 (0,1 à 0,4 d'ordinaire).")
    deltas = dict(DELTAS, central=delta)
    reasons: dict[str, str] = {}

    rows, ignored = spend_rows(con, f)
    if ignored:
        reasons["filters"] = "Filtres sans objet sur cette base, non appliqués : " + ", ".join(ignored) + "."
    rows = _assign(rows, model)
    total = float(rows["spend"].sum()) if len(rows) else 0.0
    if not len(rows):
        reasons["spend"] = "Aucune dépense sur la période et les filtres choisis : rien à estimer."
    territory = f.territory
    located = rows["dep"].notna()
    in_t = rows["in_territory"].fillna(False).astype(bool) if territory is not None else None

    # --- national model: every supplier assumed established in France ----------------
    f_nat, classified, unclassified = _demand(rows, model)
    nat = _effects_range(model, f_nat, None, None)
    if nat["induced"] is None:
        reasons["jobs_induced"] = (
            "Fermeture ménages impossible : salaires par branche (jobs_a38.csv) ou consommation "
            "des ménages (TES, colonne P3_households) absents des tables."
        )

    # --- territory model (FLQ) -----------------------------------------------------------
    local = None
    lam: dict = {}
    share = None
    regional_source = None
    if territory is not None:
        f_loc, _, _ = _demand(rows[in_t], model)
        er = _regional_employment(model, territory)
        if er is not None and er.sum() > 0:
            regional_source = (
                "emploi par branche du territoire fourni par l'utilisateur (regional_employment.csv)"
            )
            en = model.jobs_per_eur * 1e6 * _output_2015(model)  # persons by branch, 2015
            share = float(min(1.0, er.sum() / en.sum()))
            flq_m = {k: flq(er, en, d) for k, d in deltas.items()}
            hh = {k: flegg_lambda(share, d) for k, d in deltas.items()}
        else:
            share = _population_share(con, territory)
            regional_source = (
                "part de la population du territoire (SLQ = 1 pour toutes les branches, FLQ = λ)"
            )
            flq_m = {k: flegg_lambda(share, d) for k, d in deltas.items()} if share else None
            hh = flq_m
        if flq_m is None:
            reasons["territory"] = (
                "Population du territoire inconnue (référentiel des communes absent) : pas de "
                "régionalisation, seuls les emplois directs locaux sont donnés."
            )
            local = {
                "direct": _effects_range(model, f_loc, None, None)["direct"],
                "indirect": None,
                "induced": None,
            }
        else:
            lam = {k: round(float(v), 4) for k, v in hh.items()}
            local = _effects_range(model, f_loc, flq_m, hh)
        local["demand"] = f_loc

    headline = local if local is not None else nat
    scope = "territoire" if local is not None else "national"
    if local is not None and local["indirect"] is None:
        reasons["jobs_indirect"] = reasons["territory"]
    if local is not None and not local.get("induced") and "jobs_induced" not in reasons:
        reasons["jobs_induced"] = reasons.get("territory", "Fermeture ménages impossible.")

    # --- carbon ----------------------------------------------------------------------
    carbon = _carbon(rows)
    if carbon["unclassified_spend"] > 0:
        reasons["carbon"] = (
            f"{fmt.fmt_eur(carbon['unclassified_spend'])} de dépenses sans NAF ni CPV : estimées à "
            "l'intensité moyenne des dépenses classées."
        )

    # --- tables ------------------------------------------------------------------------
    by_branch = _by_branch(rows, model, nat, local)
    by_dep = _by_departement(con, rows, model, territory)
    spend_local = float(rows.loc[in_t, "spend"].sum()) if in_t is not None else None
    spend_located_out = float(rows.loc[~in_t & located, "spend"].sum()) if in_t is not None else None
    unlocated = float(rows.loc[~located, "spend"].sum())

    result = {
        "period": f.period_dict(),
        "basis": f.basis,
        "scope": scope,
        "territory": territory.as_dict() if territory else None,
        "spend": {
            "total": round(total, 2),
            "vat_rule": (
                "Montants HT ; TTC / 1,2 quand seul le TTC est connu"
                if f.basis == "paid"
                else "Montants notifiés (HT), partagés à parts égales entre cotitulaires"
            ),
            "vat_estimated": round(float(rows["spend_vat_estimated"].sum()) if len(rows) else 0.0, 2),
            "classified": round(classified, 2),
            "unclassified": round(unclassified, 2),
            "local": None if spend_local is None else round(spend_local, 2),
            "leak": None if spend_located_out is None else round(spend_located_out, 2),
            "unlocated": round(unlocated, 2),
        },
        "jobs_direct": _sum_range(headline["direct"]),
        "jobs_indirect": _sum_range(headline["indirect"]),
        "jobs_induced": _sum_range(headline["induced"]),
        "national": {
            "jobs_direct": _sum_range(nat["direct"]),
            "jobs_indirect": _sum_range(nat["indirect"]),
            "jobs_induced": _sum_range(nat["induced"]),
        },
        "jobs_per_million": {
            "national": _per_million(nat, total),
            "territory": _per_million(local, spend_local)
            if local and local["indirect"] and spend_local
            else None,
        },
        "carbon_tco2e": carbon["total"],
        "carbon_by_category": _category_labels(con, carbon["by_category"]),
        "carbon_top_suppliers": carbon["by_supplier"],
        "by_branch": by_branch,
        "by_departement": by_dep,
        "coverage": {
            "branch_share": round(classified / total, 4) if total > 0 else None,
            "branch_from_naf": round(float(rows.loc[rows["branch_source"] == "naf", "spend"].sum()), 2)
            if len(rows)
            else 0.0,
            "branch_from_cpv": round(float(rows.loc[rows["branch_source"] == "cpv", "spend"].sum()), 2)
            if len(rows)
            else 0.0,
            "located_share": round(1 - unlocated / total, 4) if total > 0 else None,
            "carbon_levels": carbon["levels"],
        },
        "parameters": {
            "tes_year": model.year,
            "delta": deltas,
            "lambda": lam or None,
            "territory_share": share,
            "regional_proxy": regional_source,
            "jobs_uncertainty": model.params.get("jobs_coefficient_uncertainty", JOBS_UNCERTAINTY),
            "io_dir": str(model.io_dir),
        },
        "multipliers": {
            "type_i_output_min": round(float(np.min(_market_multipliers(model))), 3),
            "type_i_output_max": round(float(np.max(_market_multipliers(model))), 3),
        },
        "data_years": {
            "tes": model.year,
            "tes_alternatives": sorted(model.tables),
            "jobs": model.jobs_year,
            "carbon": model.carbon_year,
            "spend": [f.date_from.year, f.date_to.year],
        },
        "reasons": reasons,
        "how_to_read": HOW_TO_READ,
    }
    result["method"] = method_text(result, model)
    return result


def _output_2015(model: Model) -> np.ndarray:
    p = model.io_dir / "jobs_a38.csv"
    df = pd.read_csv(p).set_index("branch").reindex(list(model.branches))
    if "output_2015_meur" in df:
        return df["output_2015_meur"].fillna(0).to_numpy(float)
    return model.table.output


def _market_multipliers(model: Model) -> np.ndarray:
    """Type-I output multipliers of the central year, without TZ (households as employers,
    no intermediate consumption by construction)."""
    m = model.table.multipliers
    keep = [i for i, b in enumerate(model.branches) if b != "TZ"]
    return m[keep]


def _carbon(rows: pd.DataFrame) -> dict:
    if not len(rows):
        zero = {"low": 0.0, "central": 0.0, "high": 0.0}
        return {"total": zero, "by_category": pd.DataFrame(), "by_supplier": pd.DataFrame(),
                "unclassified_spend": 0.0, "levels": {}}  # fmt: skip
    known = rows["ci_central"].notna()
    tot = {}
    for k in RANGE:
        grams = float((rows.loc[known, "spend"] * rows.loc[known, f"ci_{k}"]).sum())
        tot[k] = grams
    sk = float(rows.loc[known, "spend"].sum())
    su = float(rows.loc[~known, "spend"].sum())
    avg = {k: (tot[k] / sk if sk else 0.0) for k in RANGE}
    t = {k: (tot[k] + su * avg[k]) / 1e6 for k in RANGE}  # g -> t
    rows = rows.assign(
        carbon_tco2e=np.where(known, rows["spend"] * rows["ci_central"], rows["spend"] * avg["central"])
        / 1e6,
        category=_per_distinct(_category, rows["naf"], rows["cpv"], rows["branch_source"]),
    )
    cat = (
        rows.groupby("category", dropna=False)
        .agg(spend=("spend", "sum"), carbon_tco2e=("carbon_tco2e", "sum"))
        .reset_index()
        .sort_values("carbon_tco2e", ascending=False)
    )
    cat["intensity_kg_per_keur"] = np.where(
        cat["spend"] > 0, cat["carbon_tco2e"] * 1e6 / cat["spend"], np.nan
    )
    if rows["supplier_key"].is_unique:  # the paid basis: one row per supplier already
        sup = rows[["supplier_key", "name", "naf", "spend", "carbon_tco2e"]]
    else:  # notified: a row per supplier and CPV
        sup = (
            rows.groupby("supplier_key")
            .agg(
                name=("name", "first"),
                naf=("naf", "first"),
                spend=("spend", "sum"),
                carbon_tco2e=("carbon_tco2e", "sum"),
            )
            .reset_index()
        )
    values = sup["carbon_tco2e"].to_numpy(dtype=float)
    values = values[~np.isnan(values)]
    if len(values) > TOP_EMITTERS:  # the candidates first: sorting 90,000 text keys costs 0.15 s
        floor = np.partition(values, len(values) - TOP_EMITTERS)[len(values) - TOP_EMITTERS]
        sup = sup[sup["carbon_tco2e"] >= floor]  # the 20 largest and their ties
    sup = sup.sort_values(["carbon_tco2e", "supplier_key"], ascending=[False, True]).head(TOP_EMITTERS)
    sup["intensity_kg_per_keur"] = np.where(
        sup["spend"] > 0, sup["carbon_tco2e"] * 1e6 / sup["spend"], np.nan
    )
    for df in (cat, sup):
        df["spend"] = df["spend"].round(2)
        df["carbon_tco2e"] = df["carbon_tco2e"].round(3)
        df["intensity_kg_per_keur"] = df["intensity_kg_per_keur"].round(1)
    levels = rows.groupby(rows["carbon_level"].fillna("aucune"))["spend"].sum().round(2).to_dict()
    return {
        "total": _range(t["low"], t["central"], t["high"], 1),
        "by_category": cat.reset_index(drop=True),
        "by_supplier": sup.reset_index(drop=True),
        "unclassified_spend": su,
        "levels": levels,
    }


def _category_labels(con, cat: pd.DataFrame) -> pd.DataFrame:
    """Label 'NAF 42' / 'CPV 45' categories from the reference nomenclatures."""
    if not len(cat):
        return cat.assign(label=pd.Series(dtype=str))
    labels: dict[str, str] = {}
    for sql, prefix in (
        ("SELECT left(naf, 2), any_value(division_label) FROM ref_naf GROUP BY 1", "NAF "),
        ("SELECT division, libelle_fr FROM ref_cpv_divisions", "CPV "),
    ):
        try:
            labels.update({prefix + str(a): str(b) for a, b in con.execute(sql).fetchall()})
        except duckdb.Error:
            pass
    cat = cat.copy()
    cat.insert(1, "label", [labels.get(c, c) for c in cat["category"]])
    return cat


@lru_cache(maxsize=4096)
def _category(naf, cpv, source) -> str:
    key = _norm_naf_key(naf) if source == "naf" else None
    if key and key[:2].isdigit():
        return f"NAF {key[:2]}"
    if cpv is not None and not (isinstance(cpv, float) and math.isnan(cpv)) and source == "cpv":
        return f"CPV {re.sub(r'[^0-9]', '', str(cpv))[:2]}"
    return "Non classé"


def _by_branch(rows, model: Model, nat: dict, local: dict | None) -> pd.DataFrame:
    idx = {b: i for i, b in enumerate(model.branches)}
    head = local if local is not None and local.get("indirect") is not None else nat
    rows = rows.assign(carbon_g=rows["spend"] * rows["ci_central"]) if len(rows) else rows
    spend = rows.groupby("branch")["spend"].sum() if len(rows) else pd.Series(dtype=float)
    carbon = rows.groupby("branch")["carbon_g"].sum() if len(rows) else pd.Series(dtype=float)
    out = []
    for b in model.branches:
        i = idx[b]
        if abs(spend.get(b, 0.0)) < 0.005 and nat["direct"]["central"][i] == 0:
            continue
        out.append(
            {
                "branch": b,
                "label": model.labels.get(b, b),
                "spend": round(float(spend.get(b, 0.0)), 2),
                "spend_local": round(float(local["demand"][i]), 2) if local is not None else None,
                "jobs_direct": round(float(head["direct"]["central"][i]), 2),
                "jobs_indirect": round(float(head["indirect"]["central"][i]), 2)
                if head.get("indirect")
                else None,
                "jobs_direct_national": round(float(nat["direct"]["central"][i]), 2),
                "jobs_per_meur": round(float(model.jobs_per_eur[i] * 1e6), 2),
                "carbon_tco2e": round(float(carbon.get(b, 0.0)) / 1e6, 2),
            }
        )
    df = pd.DataFrame(out)
    if len(rows) and rows["branch"].isna().any():
        # unclassified spend: its jobs are spread over the classified branches above
        # (pro rata), shown here for the total only
        u = float(rows.loc[rows["branch"].isna(), "spend"].sum())
        df = pd.concat(
            [
                df,
                pd.DataFrame(
                    [
                        {
                            "branch": None,
                            "label": "Non classé (réparti au prorata ci-dessus)",
                            "spend": round(u, 2),
                        }
                    ]
                ),
            ],
            ignore_index=True,
        )
    return df


def _by_departement(con, rows, model: Model, territory: Territory | None) -> pd.DataFrame:
    cols = ["code", "name", "spend", "jobs_direct", "in_territory"]
    if not len(rows):
        return pd.DataFrame(columns=cols)
    e = pd.Series(model.jobs_per_eur * 1e6, index=list(model.branches))
    rows = rows.assign(e=rows["branch"].map(e))
    known = rows["e"].notna()
    avg = (
        (rows.loc[known, "spend"] * rows.loc[known, "e"]).sum() / rows.loc[known, "spend"].sum()
        if known.any()
        else 0.0
    )
    rows["jobs"] = rows["spend"] * rows["e"].fillna(avg) / 1e6
    g = (
        rows.groupby(rows["dep"].fillna(""))
        .agg(spend=("spend", "sum"), jobs_direct=("jobs", "sum"), in_territory=("in_territory", "max"))
        .reset_index()
        .rename(columns={"dep": "code"})
    )
    names = {}
    try:
        names = dict(con.execute("SELECT code, nom FROM ref_departements").fetchall())
    except duckdb.Error:
        pass
    g["name"] = [names.get(c, "Non localisé" if c == "" else c) for c in g["code"]]
    g["code"] = g["code"].replace("", None)
    g["spend"] = g["spend"].round(2)
    g["jobs_direct"] = g["jobs_direct"].round(2)
    if territory is None:
        g["in_territory"] = None
    return g.sort_values("spend", ascending=False)[cols].reset_index(drop=True)


# ----------------------------------------------------------------------------------------
# Text and JSON


def method_text(d: dict, model: Model | None = None) -> str:
    """The method, in French, with this result's parameters."""
    p = d["parameters"]
    yrs = d["data_years"]
    parts = [
        "Estimation par un modèle entrées-sorties (Leontief), à lire comme un ordre de grandeur.",
        f"Dépense prise en compte : {d['spend']['vat_rule']}"
        + (
            " (base payée : mandats de la période)."
            if d["basis"] == "paid"
            else " (base notifiée : contrats notifiés dans la période ; un montant notifié est une estimation ou un plafond, pas un paiement)."
        ),
        "Chaque dépense est rattachée à l'une des 38 branches A38 de l'INSEE par le code NAF du fournisseur"
        + (
            " (à défaut, la division CPV du contrat, table de correspondance du projet)"
            if d["basis"] == "notified"
            else ""
        )
        + " ; la part sans branche connue est répartie au prorata des dépenses classées.",
        f"Emplois directs = dépense HT × emplois par euro de production de la branche (modèle ThreeME, France "
        f"{yrs['jobs']}, 32 secteurs ramenés aux branches A38, euros {yrs['jobs']} non corrigés de l'inflation ; "
        f"incertitude ±{p['jobs_uncertainty'] * 100:.0f} %). Un emploi = une personne employée pendant un an.",
        f"Emplois indirects (type I) : achats aux fournisseurs des fournisseurs, par l'inverse de Leontief des "
        f"coefficients techniques domestiques branche × branche du TES INSEE {yrs['tes']} (hypothèse de technologie "
        f"de branche, A = D·B).",
        "Emplois induits (type II) : dépense de consommation des salaires versés, modèle fermé par les ménages "
        "(salaires par branche ThreeME 2015 ; consommation des ménages en produits domestiques, TES).",
    ]
    if d["scope"] == "territoire":
        parts.append(
            "Régionalisation : seules les dépenses auprès de fournisseurs établis dans le territoire entrent dans la "
            "demande locale ; le reste « fuit » hors du territoire. Coefficients régionaux = FLQ ∘ A (quotient de "
            f"localisation de Flegg, λ = [log2(1 + Eʳ/Eⁿ)]^δ, δ = {str(p['delta']['central']).replace('.', ',')} ; "
            "fourchette δ = 0,4 à 0,1). Emploi régional par branche : "
            f"{p['regional_proxy'] or 'non disponible'}."
        )
    else:
        parts.append(
            "Sans territoire de référence, les résultats sont nationaux (fournisseurs supposés établis en France)."
        )
    parts.append(
        f"Fourchette basse/haute : δ, TES {min(yrs['tes_alternatives'])}–{max(yrs['tes_alternatives'])}, coefficients "
        "d'emploi et variantes de la fermeture ménages."
    )
    parts.append(
        f"Carbone : estimation monétaire (spend-based) = dépense HT × intensité de la production française de la "
        f"sous-classe NAF du fournisseur (La Société Nouvelle, {yrs['carbon']}, gCO2e/€ = kgCO2e/k€, y compris les "
        "émissions importées des consommations intermédiaires) ; fourchette = modèles EEIO alternatifs "
        "(Royaume-Uni, États-Unis, Danemark, Canada). Un achat à un distributeur porte l'intensité du commerce, "
        "pas celle du bien : l'estimation est alors basse."
    )
    return " ".join(parts)


def _records(df) -> list:
    if df is None or not len(df):
        return []
    return json.loads(df.to_json(orient="records", force_ascii=False))


def footprint_json(con: duckdb.DuckDBPyConnection, f: Filters, **kw) -> dict:
    """:func:`footprint` as plain JSON (the ``python -m analytics footprint --json`` contract)."""
    d = footprint(con, f, **kw)
    out = dict(d)
    if not d["spend"].get("total"):
        # nothing spent: no estimate, rather than zero jobs (INDICATORS.md: never 0 by default)
        why = d["reasons"].get("spend", "Aucune dépense sur la période.")
        for key in ("jobs_direct", "jobs_indirect", "jobs_induced", "carbon_tco2e"):
            out[key] = None
            out["reasons"] = {**out.get("reasons", {}), key: why}
    for k in ("by_branch", "by_departement", "carbon_by_category", "carbon_top_suppliers"):
        out[k] = _records(d[k])
    return json.loads(json.dumps(out, default=_json_default))


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return str(x)


def _fmt_range(r: dict | None, unit: str = "", decimals: int | None = None) -> str:
    if not r:
        return fmt.MISSING
    if decimals is None:
        decimals = 0 if abs(r["central"]) >= 100 else 1
    c = fmt.fmt_number(r["central"], decimals)
    lo, hi = fmt.fmt_number(r["low"], decimals), fmt.fmt_number(r["high"], decimals)
    return f"{c}{unit} (de {lo} à {hi}{unit})"


def format_summary(d: dict) -> str:
    """A French summary for the command line."""
    s = d["spend"]
    scope = "dans le territoire" if d["scope"] == "territoire" else "en France"
    lines = [
        f"Empreinte économique et carbone — {fmt.fmt_date(d['period']['from'])} au {fmt.fmt_date(d['period']['to'])}"
        f" (base {'payée' if d['basis'] == 'paid' else 'notifiée'})",
        f"Dépense HT : {fmt.fmt_eur(s['total'])}"
        + (
            f" ; dans le territoire {fmt.fmt_eur(s['local'])}, hors territoire {fmt.fmt_eur(s['leak'])}, "
            f"non localisée {fmt.fmt_eur(s['unlocated'])}"
            if s.get("local") is not None
            else ""
        ),
        f"Emplois soutenus {scope} (personnes × an) :",
        f"  directs  : {_fmt_range(d['jobs_direct'])}",
        f"  indirects: {_fmt_range(d['jobs_indirect'])}",
        f"  induits  : {_fmt_range(d['jobs_induced'])}",
    ]
    if d["scope"] == "territoire":
        n = d["national"]
        lines.append(
            f"  (en France : directs {_fmt_range(n['jobs_direct'])}, indirects {_fmt_range(n['jobs_indirect'])},"
            f" induits {_fmt_range(n['jobs_induced'])})"
        )
    jpm = (d.get("jobs_per_million") or {}).get("national")
    if jpm:
        lines.append(
            f"Emplois par M€ HT (France) : directs {_fmt_range(jpm['direct'], decimals=1)} ; "
            f"directs + indirects {_fmt_range(jpm['direct_indirect'], decimals=1)}"
        )
    lines.append(f"Carbone (estimation monétaire) : {_fmt_range(d['carbon_tco2e'], ' tCO2e')}")
    cov = d.get("coverage") or {}
    if cov.get("branch_share") is not None:
        lines.append(f"Dépense rattachée à une branche : {fmt.fmt_pct(cov['branch_share'])}")
    for why in (d.get("reasons") or {}).values():
        lines.append(f"Note : {why}")
    y = d["data_years"]
    lines.append(f"Données : TES INSEE {y['tes']}, emplois ThreeME {y['jobs']}, carbone LSN {y['carbon']}.")
    return "\n".join(lines)
