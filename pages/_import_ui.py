"""The Import page's pieces: the uploaded file staged on disk, the preview of an upload
(format, figures, rejected lines, editable column mapping) and the import history with
undo. Actions are only recorded here, after the role check; the page runs them. Not a page
(not registered in the navigation)."""

import json
import re
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from analytics import auth, cached, previews
from analytics.fmt import fmt_eur, fmt_number
from pages import _ui

IGNORE = "(ignorer)"


def request(action: str, *args) -> None:
    """Button callback: record an action after the role check (callbacks run before the page)."""
    try:
        auth.require_analyst()
    except auth.PermissionDenied as exc:
        st.session_state["imp_message"] = ("error", str(exc))
        return
    st.session_state["imp_action"] = (action, *args)


def stage(up) -> str:
    """The upload as a file on disk (the importers read paths), kept for the session."""
    staged = st.session_state.get("imp_staged")
    if staged and staged[0] == up.file_id and Path(staged[1]).exists():
        return staged[1]
    folder = Path(tempfile.mkdtemp(prefix="empreinte_"))
    # a fixed name on disk: the user's file name is data (shown and stored), never a path
    suffix = Path(up.name).suffix.lower()
    path = folder / ("upload" + (suffix if re.fullmatch(r"\.[a-z0-9]{1,6}", suffix) else ""))
    path.write_bytes(up.getvalue())
    st.session_state["imp_staged"] = (up.file_id, str(path), up.name)
    return str(path)


def show_preview(p: dict, up, kind: str, path: str, mapping) -> None:
    if "refused" in p:
        st.error(f"Fichier refusé : {p['refused']}")
        return
    d = p.get("details") or {}
    facts = [f"format {d.get('format', '?')}"]
    if d.get("encoding"):
        facts.append(f"encodage {d['encoding']}")
    if d.get("delimiter"):
        facts.append(f"séparateur « {d['delimiter']} »")
    if d.get("header_line"):
        facts.append(f"en-tête ligne {d['header_line']}")
    if d.get("amount_basis"):
        facts.append(f"montants {d['amount_basis']}")
    st.markdown("**Aperçu** : " + ", ".join(facts) + ".")
    if p.get("already_imported"):
        st.warning(f"Ce fichier a déjà été importé (import n° {p['already_imported'][0]}) : il sera refusé.")
    c = st.columns(4)
    c[0].metric("Lignes lues", fmt_number(p["rows_read"]))
    c[1].metric("Lignes à charger", fmt_number(p["rows_loaded"]))
    c[2].metric("Lignes rejetées", fmt_number(p["rows_rejected"]))
    c[3].metric("Déjà présentes", fmt_number(p["rows_duplicate"]))
    if p.get("amount_total") is not None:
        st.caption(f"Montant des lignes chargées : {fmt_eur(p['amount_total'], 2)}.")
    edit_mapping(d, up, kind)
    if p["rows_rejected"]:
        _ui.table(
            p["reasons"],
            "imp_reasons",
            title="Motifs de rejet",
            labels={"reason": "Motif", "lines": "Lignes"},
        )
        _ui.table(
            p["rejected"],
            "imp_rejected",
            title="Lignes rejetées",
            labels={
                "line_number": "Ligne",
                "column": "Colonne",
                "raw_value": "Valeur lue",
                "reason": "Motif",
            },
        )
    with st.expander("Premières lignes telles qu'elles seront enregistrées"):
        _ui.table(p["sample"], "imp_sample")
    st.button(
        "Importer ce fichier",
        type="primary",
        key="imp_commit",
        disabled=not p["rows_loaded"],
        on_click=request,
        args=("commit", kind, path, up.name, json.dumps(mapping)),
    )


def edit_mapping(d: dict, up, kind: str) -> None:
    fields = previews.mapping_fields(kind)
    columns = d.get("columns")
    if not fields or not isinstance(columns, dict):
        return
    rows = [{"Colonne du fichier": h, "Champ": f} for f, h in columns.items()]
    rows += [{"Colonne du fichier": h, "Champ": IGNORE} for h in d.get("ignored_columns") or []]
    with st.expander("Correspondance des colonnes (modifiable)"):
        edited = st.data_editor(
            pd.DataFrame(rows),
            key=f"imp_map_editor_{up.file_id}_{kind}",
            hide_index=True,
            disabled=["Colonne du fichier"],
            column_config={"Champ": st.column_config.SelectboxColumn("Champ", options=[IGNORE, *fields])},
        )
        if st.button("Relire avec cette correspondance", key="imp_remap"):
            st.session_state[f"imp_mapping_{up.file_id}_{kind}"] = {
                r["Colonne du fichier"]: ("ignorer" if r["Champ"] in (IGNORE, None) else r["Champ"])
                for r in edited.to_dict("records")
            }
            st.rerun()


def history(read_only: bool) -> None:
    st.subheader("Historique des imports")
    rows = pd.DataFrame(cached.imports())
    if not len(rows):
        st.info("Aucun import pour l'instant.")
        return
    shown = rows.drop(columns=["sha256", "started_at"], errors="ignore")
    _ui.table(
        rows,
        "imp_history",
        money=("amount_total",),
        dates=("finished_at", "undone_at"),
        display=shown,
        labels=_ui.IMPORT_LABELS,
    )
    active = rows[rows["status"] == "ok"]["import_id"].tolist()
    if read_only or not active:
        return
    c1, c2 = st.columns([2, 1])
    target = c1.selectbox(
        "Import à annuler",
        active,
        key="imp_undo_id",
        format_func=lambda i: f"n° {i} – {rows.set_index('import_id').loc[i, 'file']}",
    )
    c2.button("Annuler cet import", key="imp_undo", on_click=request, args=("undo", target))
