"""Données et méthodes: what each indicator means, the sources and their dates, the
quality of the data (unidentified suppliers, unlocated spend, rejected lines), a glossary."""

import pandas as pd
import streamlit as st

from analytics import cached
from analytics.fmt import fmt_eur, fmt_number, fmt_pct
from analytics.store import DATA_DIR
from pages import _ui

KIND_NAMES = {
    "mandats": "Mandats",
    "decp": "Marchés (DECP)",
    "sirene": "SIRENE",
    "structures": "Structures inclusives",
    "ess": "Liste ESS",
    "insertion": "Heures d'insertion",
}
GLOSSARY = {
    "ESS": "Économie sociale et solidaire (loi du 31 juillet 2014) : associations, coopératives, mutuelles, "
    "fondations et sociétés commerciales agréées ESUS.",
    "ESUS": "Entreprise solidaire d'utilité sociale : agrément délivré par l'État.",
    "SIAE": "Structure d'insertion par l'activité économique : entreprise d'insertion (EI), association "
    "intermédiaire (AI), atelier et chantier d'insertion (ACI), entreprise de travail temporaire d'insertion "
    "(ETTI), entreprise d'insertion par le travail indépendant (EITI) ; le GEIQ lui est assimilé ici.",
    "EA, ESAT": "Entreprise adaptée et établissement et service d'aide par le travail : emploi de personnes "
    "handicapées.",
    "Marché réservé": "Marché réservé aux structures inclusives (code de la commande publique, L.2113-12 et "
    "L.2113-13).",
    "SPASER": "Schéma de promotion des achats publics socialement et écologiquement responsables, obligatoire "
    "au-delà de 50 M€ d'achats annuels (L.2111-3) ; ses indicateurs sont publiés chaque année.",
    "DECP": "Données essentielles de la commande publique : les marchés notifiés, publiés par les acheteurs.",
    "Payé / notifié": "Payé : montants des mandats (comptabilité). Notifié : montant d'un marché à sa "
    "notification, une estimation ou un plafond, pas un paiement.",
    "CPV, NAF": "CPV : nomenclature européenne des objets de marchés. NAF : nomenclature d'activités de l'INSEE.",
    "EPCI": "Établissement public de coopération intercommunale (métropole, communauté urbaine, "
    "d'agglomération ou de communes).",
    "HHI": "Indice de Herfindahl-Hirschman : somme des carrés des parts de marché des fournisseurs.",
}


def body() -> None:
    f = _ui.filters()
    st.title("Données et méthodes")
    st.subheader("Qualité des données de la période")
    head = cached.headline(f)
    total = head.get("total_spend")
    cov = head.get("coverage") or {}
    ident = (cov.get("inclusive_share") or {}).get("identified_amount")
    unid_sup = (cov.get("supplier_count") or {}).get("unidentified_suppliers")
    imports = pd.DataFrame(cached.imports())
    rejected = (
        int(imports.loc[imports["status"] == "ok", "rows_rejected"].fillna(0).sum()) if len(imports) else 0
    )
    c = st.columns(4)
    c[0].metric(
        "Dépense non identifiée",
        fmt_pct(1 - ident / total) if total and ident is not None else "non disponible",
        help="Part de la dépense payée à des fournisseurs sans SIRET ni SIREN valide : "
        "ni localisables, ni classables.",
        border=True,
    )
    c[1].metric(
        "Fournisseurs non identifiés",
        fmt_number(unid_sup) if unid_sup is not None else "non disponible",
        help="Fournisseurs connus par leur seul nom.",
        border=True,
    )
    c[2].metric(
        _ui.label_of("unlocated_share"),
        fmt_pct(head.get("unlocated_share")),
        help=_ui.help_text("unlocated_share", head),
        border=True,
    )
    c[3].metric(
        "Lignes rejetées à l'import",
        fmt_number(rejected),
        help="Lignes refusées (montant ou date illisible…) par les imports en vigueur ; le détail est "
        "dans l'historique.",
        border=True,
    )
    if total is None:
        _ui.empty("mandats", "Aucune dépense sur la période.")

    st.subheader("Sources et dates")
    if len(imports):
        last = (
            imports[imports["status"] == "ok"]
            .groupby("kind")
            .agg(
                imports=("import_id", "count"), lignes=("rows_loaded", "sum"), dernier=("finished_at", "max")
            )
            .reset_index()
        )
        last["kind"] = last["kind"].map(KIND_NAMES).fillna(last["kind"])
        _ui.table(
            last,
            "met_sources",
            dates=("dernier",),
            ints=("imports", "lignes"),
            labels={"kind": "Source", "imports": "Imports", "lignes": "Lignes", "dernier": "Dernier import"},
        )
        with st.expander("Historique complet des imports"):
            _ui.table(
                imports,
                "met_history",
                money=("amount_total",),
                dates=("finished_at", "started_at", "undone_at"),
                labels=_ui.IMPORT_LABELS,
                display=imports.drop(columns=["sha256"], errors="ignore"),
            )
    else:
        _ui.empty("mandats", "Aucune donnée importée.")
    readme = DATA_DIR / "README.md"
    if readme.exists():
        with st.expander("Référentiels livrés avec l'application (provenance, millésimes, licences)"):
            st.markdown(readme.read_text(encoding="utf-8"))

    st.subheader("Définitions des indicateurs")
    defs = _ui.definitions()
    if defs:
        df = pd.DataFrame(
            [
                {
                    "Indicateur": d.get("label", k),
                    "Définition": d.get("definition"),
                    "Unité": d.get("unit"),
                    "Source": d.get("source"),
                    "Clé": k,
                }
                for k, d in defs.items()
            ]
        )
        units = {
            "eur": "€",
            "share": "part",
            "count": "nombre",
            "km": "km",
            "days": "jours",
            "hours": "heures",
            "fte": "ETP",
            "index": "indice",
        }
        for source, group in df.groupby("Source", sort=False):
            with st.expander(f"Indicateurs calculés sur : {source}", expanded=source == "mandats"):
                st.markdown(
                    "\n".join(
                        f"- **{r.Indicateur}** ({units.get(r.Unité, r.Unité)}) : {r.Définition}"
                        for r in group.itertuples()
                    )
                )
        _ui.downloads(df, "met_defs", "Définitions des indicateurs")
    st.caption(
        f"Montants en euros, parts en pourcentage d'une décimale ; total de la période : {fmt_eur(total)}."
    )

    st.subheader("Glossaire")
    for term, text in GLOSSARY.items():
        st.markdown(f"**{term}** : {text}")


_ui.guard(body, "Données et méthodes")
