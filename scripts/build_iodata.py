#!/usr/bin/env python
"""Build the compact input–output and carbon tables shipped in ``data/io/``.

Reads the public sources gathered in ``../shared/data/io`` (``--shared``) and writes
small CSV files that ``analytics.footprint`` reads at run time (the application never
reads the shared folder). Deterministic: same inputs, same files.

    .venv/bin/python scripts/build_iodata.py [--shared PATH] [--out PATH]

Files written (provenance in ``data/io/PROVENANCE.md`` and ``data/README.md``):

- ``branches_a38.csv``        A38 branch codes and French labels (INSEE).
- ``naf_division_a38.csv``    NAF division (2 digits) -> A38 branch (lsnr A88 bridge,
                              checked against the NAF sous-classe -> FIGARO -> A38 path).
- ``cpv_a38.csv``             CPV prefix (2 or 3 digits, longest wins) -> A38 branch:
                              a correspondence written for this project (see CPV_A38).
- ``tes_dom_A38_YYYY_{supply,intermediate,final_uses}.csv``  INSEE domestic TES, 2015–2019.
- ``jobs_a38.csv``            persons employed, wages and employer contributions per euro
                              of output by A38 branch (ThreeME France 2015, mapped).
- ``carbon_naf.csv``          gCO2e per € (= kgCO2e/k€) by NAF sous-classe, central and
                              low/high from the alternative EEIO structures (LSN, 2022).
- ``io_parameters.csv``       scalar parameters (household income 2015…).
- ``benchmarks_jobs.csv``     reference figures on jobs per M€ (public works…).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO.parent / "shared" / "data" / "io"
DEFAULT_OUT = REPO / "data" / "io"
YEARS = range(2015, 2020)

# --------------------------------------------------------------------------------------
# CPV -> A38. Written for this project (no official CPV -> A38 table exists; the EU
# CPV 2008 codes describe products, so each prefix goes to the A38 branch whose CPA
# products it mostly covers). Longest prefix wins: '909' (cleaning) overrides '90'.
CPV_A38: list[tuple[str, str, str]] = [
    ("03", "AZ", "produits agricoles, de la pêche et de la sylviculture"),
    ("09", "DZ", "énergie (électricité, chaleur)"),
    ("091", "CD", "produits pétroliers, carburants"),
    ("092", "CD", "pétrole, charbon et produits pétroliers"),
    ("14", "BZ", "produits des mines et carrières"),
    ("147", "CH", "métaux de base"),
    ("15", "CA", "produits alimentaires et boissons"),
    ("16", "CK", "machines agricoles"),
    ("18", "CB", "vêtements, chaussures"),
    ("19", "CB", "cuir, textiles"),
    ("195", "CG", "caoutchouc et plastiques"),
    ("22", "CC", "imprimés"),
    ("24", "CE", "produits chimiques"),
    ("30", "CI", "matériel informatique et de bureau"),
    ("31", "CJ", "équipements électriques, éclairage"),
    ("32", "CI", "équipements de communication"),
    ("33", "CF", "produits pharmaceutiques"),
    ("331", "CM", "matériel médical (C32.5)"),
    ("337", "CE", "produits de soins personnels"),
    ("34", "CL", "équipement de transport"),
    ("35", "CK", "équipement de sécurité et de lutte contre l'incendie"),
    ("353", "CH", "armes et munitions (C25.4)"),
    ("354", "CL", "véhicules militaires"),
    ("355", "CL", "navires de guerre"),
    ("37", "CM", "instruments de musique, articles de sport, jeux"),
    ("38", "CI", "équipements de laboratoire, d'optique et de précision"),
    ("39", "CM", "meubles, aménagements"),
    ("397", "CJ", "appareils électroménagers"),
    ("398", "CE", "produits de nettoyage"),
    ("41", "EZ", "eau collectée et purifiée"),
    ("42", "CK", "machines industrielles"),
    ("43", "CK", "matériel de mines et de construction"),
    ("44", "CG", "matériaux de construction"),
    ("443", "CH", "câbles, fils et produits connexes"),
    ("444", "CH", "produits fabriqués divers"),
    ("445", "CH", "outils, serrures, quincaillerie"),
    ("446", "CH", "réservoirs, citernes, conteneurs"),
    ("448", "CE", "peintures, vernis, mastics"),
    ("45", "FZ", "travaux de construction"),
    ("48", "JA", "logiciels (CPA 58.29, édition de logiciels)"),
    ("50", "CM", "réparation et entretien (C33)"),
    ("501", "GZ", "réparation de véhicules (G45.2)"),
    ("507", "FZ", "réparation d'installations techniques de bâtiments (F43.2)"),
    ("508", "SZ", "réparation de biens personnels (S95)"),
    ("51", "CM", "services d'installation (C33.2)"),
    ("55", "IZ", "hôtellerie, restauration, restauration collective"),
    ("60", "HZ", "transport"),
    ("63", "HZ", "services auxiliaires des transports"),
    ("635", "NZ", "agences de voyages (N79)"),
    ("64", "JB", "télécommunications"),
    ("641", "HZ", "services postaux et de courrier (H53)"),
    ("65", "DZ", "services publics : gaz, électricité"),
    ("651", "EZ", "distribution d'eau"),
    ("66", "KZ", "services financiers et d'assurance"),
    ("70", "LZ", "services immobiliers"),
    ("71", "MA", "architecture, ingénierie, inspection"),
    ("72", "JC", "services informatiques"),
    ("73", "MB", "recherche et développement"),
    ("75", "OZ", "administration publique"),
    ("76", "BZ", "services liés au pétrole et au gaz (B09)"),
    ("77", "AZ", "services agricoles et sylvicoles"),
    ("773", "NZ", "services horticoles, espaces verts (N81.3)"),
    ("79", "NZ", "services aux entreprises"),
    ("791", "MA", "services juridiques (M69.1)"),
    ("792", "MA", "comptabilité, audit (M69.2)"),
    ("793", "MC", "études de marché (M73.2)"),
    ("7934", "MC", "publicité et marketing (M73.1)"),
    ("794", "MA", "conseil en gestion (M70.2)"),
    ("798", "CC", "impression (C18)"),
    ("80", "PZ", "enseignement et formation"),
    ("85", "QB", "santé et action sociale (par défaut : action sociale)"),
    ("851", "QA", "services de santé (Q86)"),
    ("852", "MC", "services vétérinaires (M75)"),
    ("90", "EZ", "eaux usées, déchets, environnement"),
    ("909", "NZ", "nettoyage et hygiénisation (N81.2)"),
    ("92", "RZ", "services récréatifs, culturels et sportifs"),
    ("98", "SZ", "autres services personnels et communautaires"),
]

# ThreeME France 2015 (32 sectors) -> sets of A38 branches with the same total output
# (checked below against the INSEE TES 2015 branch output, tolerance 0.5 %).
ELEC = ["senu", "seoi", "sega", "seco", "sewi", "seso", "sehy", "sech", "seot", "sbga"]
TRANSPORT = ["srai", "sroa", "swat", "sair"]
GROUPS: list[tuple[list[str], list[str]]] = [
    (["sagr", "sfor"], ["AZ"]),
    (["smin", "sgas"], ["BZ"]),
    (["sfoo"], ["CA"]),
    (["soil"], ["CD"]),
    (["sche", "sbfu"], ["CE", "CF"]),
    (["sgla", "spla"], ["CG"]),
    (["smet"], ["CH"]),
    (["sveh"], ["CL"]),
    (["scon"], ["FZ"]),
    (["spap", "sigo", "scgo"], ["CB", "CC", "CI", "CJ", "CK", "CM", "EZ"]),
    # services: electricity, transport, business services and (non-market) public services
    (
        ELEC + TRANSPORT + ["spri", "spub"],
        ["DZ", "GZ", "HZ", "IZ", "JA", "JB", "JC", "KZ", "LZ", "MA", "MB", "MC", "NZ"]
        + ["OZ", "PZ", "QA", "QB", "RZ", "SZ", "TZ"],
    ),
]
# A38 -> ThreeME A17 sector (2010 calibration) used only for the relative structure
# within a group above.
A38_A17 = {
    "AZ": "sAZ", "BZ": "sDE", "CA": "sC1", "CB": "sC5", "CC": "sC5", "CD": "sC2",
    "CE": "sC5", "CF": "sC5", "CG": "sC5", "CH": "sC5", "CI": "sC3", "CJ": "sC3",
    "CK": "sC3", "CL": "sC4", "CM": "sC5", "DZ": "sDE", "EZ": "sDE", "FZ": "sFZ",
    "GZ": "sGZ", "HZ": "sHZ", "IZ": "sIZ", "JA": "sJZ", "JB": "sJZ", "JC": "sJZ",
    "KZ": "sKZ", "LZ": "sLZ", "MA": "sMN", "MB": "sMN", "MC": "sMN", "NZ": "sMN",
    "OZ": "sOQ", "PZ": "sOQ", "QA": "sOQ", "QB": "sOQ", "RZ": "sRU", "SZ": "sRU",
    "TZ": "sRU",
}  # fmt: skip

ALT_MODELS = {"uk": "EEIO_UK", "us": "EEIO_US", "denmark": "EEIO_DK", "canada": "EEIO_CANADA"}

PROVENANCE = """# data/io : provenance et licences

Tables compactes construites par `scripts/build_iodata.py` à partir du lot
`../shared/data/io` (assemblé le 2026-11-25 depuis des dépôts publics). L'application ne
lit que ce dossier (ou celui désigné par `EMPREINTE_IO_DIR` / le réglage
`footprint.io_dir`). Chaque table peut être remplacée par une table de même format
(colonnes décrites dans `data/README.md`, section « Empreinte économique et carbone »).

| fichier | contenu | source | licence |
|---|---|---|---|
| branches_a38.csv | 37 branches A38, libellés | INSEE, TES base 2014 | Licence Ouverte 2.0 (« Source : Insee ») |
| naf_division_a38.csv | division NAF -> branche A38 | La Société Nouvelle, lsnr-lab `R/sysdata.rda` (Divisions), commit 89c44bee ; vérifié contre lsnmacrofootprint `metadata_nace_niv5` + `metadata_figaro_industries` (commit 47e40c6a) | CeCILL 2.1 / EUPL |
| cpv_a38.csv | préfixe CPV (2-4 chiffres) -> branche A38 | table écrite pour Empreinte (aucune table officielle CPV -> A38) | celle du projet |
| tes_dom_A38_AAAA_{supply,intermediate,final_uses}.csv | TES de production domestique au prix de base, 38 branches, 2015-2019, M€ (production domestique par produit x branche ; consommations intermédiaires domestiques produit x branche ; emplois finals domestiques par produit) | INSEE, comptes nationaux base 2014, via lsnr-lab `R/sysdata.rda` (tess_AAAA_dom), commit 89c44bee, extrait avec `rdata` | Licence Ouverte 2.0 (« Source : Insee, comptes nationaux base 2014 ») ; dépôt porteur CeCILL 2.1 |
| jobs_a38.csv | personnes employées, salaires et cotisations employeurs par € de production, par branche A38 (prix 2015) | dérivé : modèle ThreeME, calibrage France 2015 (32 secteurs, `data/France/calibration-FRA-2015.xlsx`, commit df26cfd9), structure intra-groupe du calibrage A17 (2010), production par branche du TES INSEE 2015 | GPL-3.0 (ThreeME, ADEME/OFCE/Neo) ; INSEE Licence Ouverte |
| carbon_naf.csv | intensité carbone de la production française par sous-classe NAF (gCO2e/€ = kgCO2e/k€ HT, 2022), centrale et bornes basse/haute | La Société Nouvelle, lsnmacrofootprint `disaggregation/data_temp/nace_a732_fpt.csv` (agrégat PRD), `imported_fpt_fr.csv`, `data_{uk,us,denmark,canada}_eeio.csv`, commit 47e40c6a | EUPL (déclarée dans DESCRIPTION) |
| io_parameters.csv | paramètres scalaires (revenu des ménages 2015, P3 ménages, incertitude) | ThreeME FRA 2015 (feuille HH), INSEE TES 2015 | GPL-3.0 / Licence Ouverte |
| benchmarks_jobs.csv | repères publiés d'emplois par M€ (travaux publics…) | pages publiques citées (URL par ligne) | citations courtes, aucune licence revendiquée |

Règles de dérivation : voir la docstring de `scripts/build_iodata.py` et la section de
`data/README.md`. Les valeurs INSEE sont recopiées à l'identique (arrondies au M€ entier,
comme publiées).
"""


def _label(text: str) -> str:
    text = text.strip().replace("D ÉQUIPEMENTS", "D'ÉQUIPEMENTS").lower()
    return text[0].upper() + text[1:]


def build_mappings(src: Path, out: Path) -> list[str]:
    lab = pd.read_csv(src / "0_mappings" / "A38_codes_labels.csv", dtype=str)
    lab["label_fr"] = lab["label_fr"].map(_label)
    lab = lab.rename(columns={"code_A38": "branch"})
    lab.to_csv(out / "branches_a38.csv", index=False)
    branches = lab["branch"].tolist()

    div = pd.read_csv(src / "0_mappings" / "lsnr_A88_division_to_A38_branch.csv", dtype=str)
    div = div.rename(columns={"DIVISION": "division", "BRANCH": "branch"})[["division", "branch"]]
    # cross-check: every NAF sous-classe -> FIGARO A64 industry -> A38 agrees with its division
    meta = pd.read_csv(src / "0_mappings" / "metadata_nace_niv5.csv", sep=";", dtype=str)
    fig = pd.read_csv(src / "0_mappings" / "metadata_figaro_industries.csv", sep=";", dtype=str)
    meta = meta[meta["code"] != "00.00Z"].merge(
        fig[["code", "branch"]].rename(columns={"code": "industry"}), on="industry", how="left"
    )
    check = meta.merge(div, on="division", how="left", suffixes=("_fig", "_div"))
    bad = check[(check["branch_fig"] != check["branch_div"]) & check["branch_fig"].ne("UZ")]
    if len(bad):
        raise SystemExit(f"NAF -> A38 bridges disagree:\n{bad.head()}")
    missing = set(div["branch"]) - set(branches)
    if missing:
        raise SystemExit(f"unknown A38 codes in the division bridge: {missing}")
    div.sort_values("division").to_csv(out / "naf_division_a38.csv", index=False)

    cpv = pd.DataFrame(CPV_A38, columns=["cpv_prefix", "branch", "note"])
    if not set(cpv["branch"]) <= set(branches):
        raise SystemExit("CPV_A38 uses an unknown branch")
    cpv.to_csv(out / "cpv_a38.csv", index=False)
    return branches


def build_tes(src: Path, out: Path) -> None:
    d = src / "1_io_tables" / "insee_tes_domestic_A38"
    names = {
        "supply_domestic_production": "supply",
        "intermediate_domestic": "intermediate",
        "final_uses_domestic": "final_uses",
    }
    for year in YEARS:
        for long, short in names.items():
            df = pd.read_csv(d / f"tes_dom_A38_{year}_{long}.csv")
            num = df.columns[1:]
            df[num] = df[num].fillna(0).round(0).astype("int64")  # INSEE blanks are zeros
            df.to_csv(out / f"tes_dom_A38_{year}_{short}.csv", index=False)


def _tes_output(src: Path, year: int) -> pd.Series:
    d = src / "1_io_tables" / "insee_tes_domestic_A38"
    s = pd.read_csv(d / f"tes_dom_A38_{year}_supply_domestic_production.csv", index_col=0)
    return s.loc["TOTAL"].drop("total_domestic_resources")


def build_jobs(src: Path, out: Path, branches: list[str]) -> dict:
    t3 = src / "1_io_tables" / "threeme"
    tm = pd.read_csv(t3 / "threeme_FRA2015_c28s32_sector_factors.csv").set_index("sector_code")
    a17 = pd.read_csv(t3 / "threeme_FRA_A17_sector_factors.csv").set_index("sector_code")
    g = _tes_output(src, 2015)  # M€ 2015, INSEE TES (= ThreeME total output)
    cols = {"Labor": "labour", "Wages": "wages", "Employer social contribution": "contrib"}
    res = pd.DataFrame(index=branches, columns=list(cols.values()), dtype=float)
    group_of: dict[str, str] = {}
    for sectors, a38 in GROUPS:
        x_tm, x_io = tm.loc[sectors, "Total"].sum(), g[a38].sum()
        if abs(x_tm / x_io - 1) > 0.005:
            raise SystemExit(f"ThreeME {sectors} output {x_tm:.0f} != TES {a38} {x_io:.0f}")
        for src_col, col in cols.items():
            total = tm.loc[sectors, src_col].sum()
            fixed: dict[str, float] = {}
            if "spri" in sectors:
                # DZ and HZ get the intensities of ThreeME's electricity and transport
                # sectors; the rest of the group is shared by A17 structure.
                for code, subset in (("DZ", ELEC), ("HZ", TRANSPORT)):
                    fixed[code] = tm.loc[subset, src_col].sum() / tm.loc[subset, "Total"].sum()
                    total -= fixed[code] * g[code]
            free = [b for b in a38 if b not in fixed]
            a17_col = {"labour": "Labor", "wages": "Wages", "contrib": "Employer social contribution"}[col]
            w = pd.Series({b: a17.loc[A38_A17[b], a17_col] / a17.loc[A38_A17[b], "Total"] for b in free})
            k = total / (w * g[free]).sum()
            for b in free:
                res.loc[b, col] = k * w[b]
            for b, v in fixed.items():
                res.loc[b, col] = v
        for b in a38:
            group_of[b] = (
                "+".join(sectors) if len(sectors) <= 3 else "services (électricité, transports, spri, spub)"
            )
    jobs = pd.DataFrame(
        {
            "branch": branches,
            "jobs_per_meur": (res["labour"] * 1000)
            .round(4)
            .values,  # thousand persons per M€ -> persons per M€
            "wages_per_eur": res["wages"].round(5).values,
            "employer_contrib_per_eur": res["contrib"].round(5).values,
            "output_2015_meur": g[branches].round(0).astype("int64").values,
            "threeme_sectors": [group_of[b] for b in branches],
            "a17_structure": [A38_A17[b] for b in branches],
        }
    )
    total_jobs = (jobs["jobs_per_meur"] * jobs["output_2015_meur"]).sum() / 1000
    if abs(total_jobs / tm["Labor"].sum() - 1) > 0.001:
        raise SystemExit(f"jobs do not add up: {total_jobs:.1f} vs {tm['Labor'].sum():.1f}")
    jobs.to_csv(out / "jobs_a38.csv", index=False)

    hh = pd.read_csv(t3 / "threeme_FRA2015_c28s32_sheet_HH.csv", header=None, skiprows=1)
    income = float(hh[hh[2] == "Total household income before tax"][4].iloc[0])
    fu = pd.read_csv(
        src / "1_io_tables" / "insee_tes_domestic_A38" / "tes_dom_A38_2015_final_uses_domestic.csv"
    )
    p3 = float(fu.loc[fu["product"] == "TOTAL", "P3_households"].iloc[0])
    return {
        "labour_total_thousand": float(tm["Labor"].sum()),
        "wages_total_meur": float(tm["Wages"].sum()),
        "household_income_2015_meur": income,
        "p3_households_domestic_2015_meur": p3,
    }


def build_carbon(src: Path, out: Path) -> None:
    d = src / "4_carbon_factors" / "lsn_sinese"
    cen = pd.read_csv(d / "nace_a732_fpt.csv", dtype={"code_ape_a732": str})
    cen = cen[cen["aggregate"] == "PRD"][["code_ape_a732", "fpt", "accuracy_fpt"]]
    cen = cen.rename(columns={"code_ape_a732": "naf", "fpt": "central", "accuracy_fpt": "lsn_accuracy"})
    imp = pd.read_csv(d / "imported_fpt_fr.csv", dtype={"code_ape_a732": str})
    imp = imp.rename(columns={"code_ape_a732": "naf"})[["naf", "imported_fpt"]]
    df = cen.merge(imp, on="naf", how="left")
    for short in ALT_MODELS:
        alt = pd.read_csv(d / "alt_eeio_structures" / f"data_{short}_eeio.csv", dtype={"code_ape_a732": str})
        alt = alt[(alt["aggregate"] == "PRD") & (alt["accuracy_mapping_a732"] < 5) & (alt["fpt"] > 0)]
        alt = alt.rename(columns={"code_ape_a732": "naf", "fpt": short})[["naf", short]]
        df = df.merge(alt, on="naf", how="left")
        # the alternative structures give the domestic part only: LSN adds the imported
        # embodied emissions before averaging (disaggregation.R), and so do we.
        df[short] = df[short] + df["imported_fpt"]
    models = ["central", *ALT_MODELS]
    df["low"] = df[models].min(axis=1)
    df["high"] = df[models].max(axis=1)
    for c in [*models, "imported_fpt", "low", "high"]:
        df[c] = df[c].round(0).astype("Int64")
    df = df[["naf", "central", "low", "high", *ALT_MODELS, "imported_fpt", "lsn_accuracy"]]
    df.sort_values("naf").to_csv(out / "carbon_naf.csv", index=False)


def build_benchmarks(src: Path, out: Path) -> None:
    b = pd.read_csv(src / "5_benchmarks" / "jobs_per_million_benchmarks.csv")
    b[["figure", "unit", "scope", "what_is_counted", "source_url", "source_date", "confidence"]].to_csv(
        out / "benchmarks_jobs.csv", index=False
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="dossier ../shared/data/io")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    src, out = args.shared, args.out
    out.mkdir(parents=True, exist_ok=True)
    branches = build_mappings(src, out)
    build_tes(src, out)
    params = build_jobs(src, out, branches)
    build_carbon(src, out)
    build_benchmarks(src, out)
    rows = [
        ("household_income_2015_meur", params["household_income_2015_meur"], "M€",
         "ThreeME FRA 2015, feuille HH, « Total household income before tax »"),
        ("p3_households_domestic_2015_meur", params["p3_households_domestic_2015_meur"], "M€",
         "INSEE TES domestique 2015, P3 ménages, total"),
        ("wages_total_2015_meur", params["wages_total_meur"], "M€",
         "ThreeME FRA 2015, Wages (inclut le revenu du travail des non-salariés)"),
        ("d11_over_threeme_wages", round(850000 / params["wages_total_meur"], 4), "ratio",
         "INSEE D11 2015 ≈ 850 000 M€ (README du lot io) / salaires ThreeME : borne basse de la fermeture ménages"),
        ("labour_total_2015_thousand", params["labour_total_thousand"], "milliers de personnes",
         "ThreeME FRA 2015, Labor"),
        ("jobs_coefficient_uncertainty", 0.15, "fraction",
         "±15 % sur les emplois par € (approximation ThreeME 32 secteurs -> A38, prix 2015) : convention du projet"),
    ]  # fmt: skip
    pd.DataFrame(rows, columns=["key", "value", "unit", "source"]).to_csv(
        out / "io_parameters.csv", index=False
    )
    (out / "PROVENANCE.md").write_text(PROVENANCE, encoding="utf-8")
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"data/io : {len(list(out.iterdir()))} fichiers, {size / 1024:.0f} Ko")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
