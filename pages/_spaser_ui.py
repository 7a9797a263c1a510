"""The SPASER page's report download and targets editor. Not a page (not registered in
the navigation)."""

import pandas as pd
import streamlit as st

from analytics import auth, cached
from pages import _ui

REPORT_FORMATS = {
    "pdf": ("PDF", "application/pdf"),
    "html": ("HTML", "text/html"),
    "xlsx": ("XLSX", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
}


def report_button(year: int) -> None:
    """The annual report (L.2111-3) of a chosen year, generated when the button is clicked.
    A reading: every role may download it."""
    years = sorted(cached.facets()["years"], reverse=True)
    if not years:  # nothing imported: no report to publish
        return
    with st.container(border=True):
        st.markdown("**Rapport annuel SPASER** (code de la commande publique, art. L.2111-3)")
        row = st.container(horizontal=True, vertical_alignment="bottom", gap="medium")
        chosen = row.selectbox(
            "Année",
            years,
            index=years.index(year) if year in years else 0,
            key="spaser_report_year",
            width=200,
        )
        fmt = (
            row.segmented_control(
                "Format",
                list(REPORT_FORMATS),
                default="pdf",
                format_func=lambda k: REPORT_FORMATS[k][0],
                key="spaser_report_fmt",
            )
            or "pdf"
        )
        row.download_button(
            f"Télécharger le rapport {chosen} ({REPORT_FORMATS[fmt][0]})",
            data=lambda: report_file(chosen, fmt),
            file_name=f"rapport_spaser_{chosen}.{fmt}",
            mime=REPORT_FORMATS[fmt][1],
            key="spaser_report_dl",
            icon=":material/download:",
            on_click="ignore",
            type="primary",
        )
        st.caption(
            "Indicateurs SPASER en nombre et en valeur avec leurs cibles, empreinte économique et "
            "territoriale, heures d'insertion, conformité 2026, sources et définitions. "
            "Le fichier est produit au clic (quelques secondes pour le PDF)."
        )


def report_file(year: int, fmt: str) -> bytes:
    """What the download button sends: ``report.report_bytes`` on a cursor of the app's
    connection (run by Streamlit outside the page's script, hence no session cache)."""
    from analytics import report

    with cached.cursor() as cur:
        return report.report_bytes(cur, year=year, fmt=fmt)


def targets_editor() -> None:
    st.subheader("Cibles")
    from analytics import spaser

    tg = cached.call("spaser.targets")
    labels = {k: _ui.label_of(k) for k in spaser.SPASER_INDICATORS}
    view = pd.DataFrame(
        {
            "indicator": tg["indicator"],
            "Année": tg["year"].astype(int),
            "Cible": [
                v if k == "insertion_hours" else v * 100 for k, v in zip(tg["indicator"], tg["target"])
            ],
            "Source": tg["source"],
        }
    )
    st.caption(
        "Cibles en % (heures pour les heures d'insertion). Sans cible saisie, le défaut national s'applique "
        "(100 % de contrats avec une considération environnementale, 30 % avec une considération sociale)."
    )
    if not auth.is_analyst():
        _ui.table(view.assign(indicator=view["indicator"].map(labels)), "spaser_targets_ro")
        return
    with st.form("spaser_targets_form"):
        edited = st.data_editor(
            view,
            key="spaser_targets",
            num_rows="dynamic",
            hide_index=True,
            disabled=["Source"],
            column_config={
                "indicator": st.column_config.SelectboxColumn(
                    "Indicateur", options=list(labels), required=True, format_func=labels.get
                ),
                "Année": st.column_config.NumberColumn(min_value=2015, max_value=2040, step=1, required=True),
                "Cible": st.column_config.NumberColumn(min_value=0.0, required=True, format="%.1f"),
            },
        )
        if st.form_submit_button("Enregistrer les cibles"):
            save_targets(tg, edited)


def save_targets(before: pd.DataFrame, edited: pd.DataFrame) -> None:
    from analytics import spaser

    try:
        auth.require_analyst()
        keep = set()
        for r in edited.dropna(subset=["indicator", "Année", "Cible"]).itertuples():
            value = float(r.Cible) if r.indicator == "insertion_hours" else float(r.Cible) / 100
            cached.write(spaser.set_target, r.indicator, int(r.Année), value)
            keep.add((r.indicator, int(r.Année)))
        for r in before[before["source"] == "acheteur"].itertuples():
            if (r.indicator, int(r.year)) not in keep:
                cached.write(spaser.delete_target, r.indicator, int(r.year))
    except (ValueError, auth.PermissionDenied) as exc:
        st.error(f"Cibles non enregistrées : {exc}")
        return
    st.rerun()
