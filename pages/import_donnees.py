"""Import (analysts): upload → preview (format, mapping, rejected lines) → commit with a
progress bar; the import history with undo; the buyer and its territory. Every action
checks the role on the server (auth.require_analyst) before writing."""

import json
import re
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from analytics import auth, cached, previews
from analytics.fmt import fmt_eur, fmt_number
from analytics.ingest import ImportRefused, import_file
from analytics.ingest.common import MAX_UPLOAD_BYTES, Options, undo_import
from pages import _settings, _ui

TYPES = ["csv", "txt", "xlsx", "json", "parquet"]
IGNORE = "(ignorer)"


def max_bytes() -> int:
    return min(MAX_UPLOAD_BYTES, int(st.get_option("server.maxUploadSize")) * 1024 * 1024)


def request(action: str, *args) -> None:
    """Button callback: record an action after the role check (callbacks run before the page)."""
    try:
        auth.require_analyst()
    except auth.PermissionDenied as exc:
        st.session_state["imp_message"] = ("error", str(exc))
        return
    st.session_state["imp_action"] = (action, *args)


def body() -> None:
    st.title("Import des données")
    msg = st.session_state.pop("imp_message", None)
    if msg:
        getattr(st, msg[0])(msg[1])
    if not auth.is_analyst():
        st.warning(
            "L'import, l'annulation d'un import et le réglage de l'acheteur sont réservés aux analystes. "
            "Vous pouvez consulter l'historique ci-dessous."
        )
        history(read_only=True)
        return
    action = st.session_state.pop("imp_action", None)
    if action and action[0] == "commit":
        commit(*action[1:])
    elif action and action[0] == "undo":
        undo(*action[1:])
    upload()
    history(read_only=False)
    _settings.buyer_settings(_done)


def upload() -> None:
    auth.require_analyst()  # the preview runs the importer (rolled back): an action too
    st.subheader("Nouveau fichier")
    kind = st.selectbox(
        "Type de fichier", list(previews.KIND_LABELS), format_func=previews.KIND_LABELS.get, key="imp_kind"
    )
    up = st.file_uploader(
        "Fichier CSV, XLSX, JSON ou Parquet",
        type=TYPES,
        key="imp_file",
        help=f"Taille maximale : {max_bytes() // (1024 * 1024)} Mo.",
    )
    if up is None:
        st.caption(
            "Les mandats viennent de l'export de votre logiciel financier ; les marchés des DECP "
            "(data.gouv.fr, votre profil d'acheteur) ; l'extrait SIRENE de l'annuaire des entreprises."
        )
        return
    if up.size > max_bytes():
        st.error(f"Le fichier dépasse la taille maximale autorisée ({max_bytes() // (1024 * 1024)} Mo).")
        return
    path = _stage(up)
    mapping = st.session_state.get(f"imp_mapping_{up.file_id}_{kind}")
    key = (up.file_id, kind, json.dumps(mapping, sort_keys=True))
    if st.session_state.get("imp_preview_key") != key:
        try:
            with st.spinner("Lecture du fichier…"), cached.cursor() as cur:
                st.session_state["imp_preview"] = previews.preview(cur, kind, path, Options(mapping=mapping))
        except ImportRefused as exc:
            st.session_state["imp_preview"] = {"refused": str(exc)}
        st.session_state["imp_preview_key"] = key
    show_preview(st.session_state["imp_preview"], up, kind, path, mapping)


def _stage(up) -> str:
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


def commit(kind: str, path: str, name: str, mapping_json: str) -> None:
    bar = st.progress(0.0, text="Import en cours…")
    try:
        result = cached.write(
            lambda cur, who: import_file(
                cur,
                kind,
                path,
                Options(
                    mapping=json.loads(mapping_json),
                    who=who,
                    progress=lambda m, x: bar.progress(min(max(float(x), 0.0), 1.0), text=m),
                ),
                file_name=name,
            )
        )
    except (ImportRefused, auth.PermissionDenied) as exc:
        bar.empty()
        st.error(f"Import refusé : {exc}")
        return
    bar.progress(1.0, text="Import terminé")
    st.session_state.pop("imp_preview_key", None)
    _done(
        f"Import n° {result.import_id} enregistré : {fmt_number(result.rows_loaded)} lignes chargées, "
        f"{fmt_number(result.rows_rejected)} rejetées, {fmt_number(result.rows_duplicate)} déjà présentes."
    )


def _done(text: str) -> None:
    """After a write: rerun the whole app so the sidebar (periods, freshness) sees the new data."""
    st.session_state["imp_message"] = ("success", text)
    st.rerun()


def undo(import_id: int) -> None:
    try:
        out = cached.write(lambda cur, who: undo_import(cur, int(import_id), who=who))
    except (ImportRefused, auth.PermissionDenied) as exc:
        st.error(f"Annulation refusée : {exc}")
        return
    removed = ", ".join(f"{n} {t}" for t, n in out["removed"].items()) or "aucune ligne"
    _done(f"Import n° {out['import_id']} annulé ({removed} retirées).")


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


_ui.guard(body, "Import")
