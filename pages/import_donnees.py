"""Import (analysts): upload → preview (format, mapping, rejected lines) → commit with a
progress bar; the import history with undo; the buyer and its territory. Every action
checks the role on the server (auth.require_analyst) before writing."""

import json

import streamlit as st

from analytics import auth, cached, previews
from analytics.fmt import fmt_number
from analytics.ingest import ImportRefused, import_file
from analytics.ingest.common import MAX_UPLOAD_BYTES, Options, undo_import
from pages import _import_ui as _imp
from pages import _settings, _ui

TYPES = ["csv", "txt", "xlsx", "json", "parquet"]


def max_bytes() -> int:
    return min(MAX_UPLOAD_BYTES, int(st.get_option("server.maxUploadSize")) * 1024 * 1024)


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
        _imp.history(read_only=True)
        return
    action = st.session_state.pop("imp_action", None)
    if action and action[0] == "commit":
        commit(*action[1:])
    elif action and action[0] == "undo":
        undo(*action[1:])
    upload()
    _imp.history(read_only=False)
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
    path = _imp.stage(up)
    mapping = st.session_state.get(f"imp_mapping_{up.file_id}_{kind}")
    key = (up.file_id, kind, json.dumps(mapping, sort_keys=True))
    if st.session_state.get("imp_preview_key") != key:
        try:
            with st.spinner("Lecture du fichier…"), cached.cursor() as cur:
                st.session_state["imp_preview"] = previews.preview(cur, kind, path, Options(mapping=mapping))
        except ImportRefused as exc:
            st.session_state["imp_preview"] = {"refused": str(exc)}
        st.session_state["imp_preview_key"] = key
    _imp.show_preview(st.session_state["imp_preview"], up, kind, path, mapping)


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


_ui.guard(body, "Import")
