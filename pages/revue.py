"""Revue mensuelle: the month's indicators against the previous month and the same month a
year before, alerts, revisions since the snapshot, what changed in the data; analysts
freeze the month in a snapshot with a comment."""

import json

import pandas as pd
import streamlit as st

from analytics import auth, cached, exports, review
from analytics.fmt import fmt_number
from pages import _ui

month_label = review.month_label


def body() -> None:
    st.title("Revue mensuelle")
    if msg := st.session_state.pop("rev_taken", None):
        st.success(msg)
    months = cached.call("review.months_with_data")
    if not months:
        return _ui.empty("mandats", "Aucune donnée à passer en revue.")
    choices = list(reversed(months))
    default = cached.call("review.default_month")
    month = st.selectbox("Mois passé en revue", choices, index=choices.index(default) if default in choices else 0,
                         format_func=month_label, key="rev_month")
    with cached.cursor() as cur:  # tiny and always fresh: snapshots are not in the data version
        state, past = review.snapshots_state(cur), review.snapshots(cur)
    r = cached.call("review.review_at", month, state)
    st.caption(review.snapshot_text(r["snapshot"]))
    show_alerts(r)
    comparisons(r, month)
    revisions(r)
    data_changes(r["data_changes"])
    snapshot_form(month)
    history(past)
    c1, c2, _ = st.columns([1, 1, 4])
    c1.download_button("Revue (JSON)", json.dumps(r, ensure_ascii=False, indent=2, default=str).encode(),
                       file_name=f"revue_{month}.json", mime="application/json", key="rev_json", on_click="ignore",
                       icon=":material/download:")
    c2.download_button("Revue (XLSX)", lambda: exports.to_xlsx_bytes(review.review_tables(r)),
                       file_name=f"revue_{month}.xlsx", key="rev_xlsx", on_click="ignore",
                       mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                       icon=":material/download:")


def show_alerts(r: dict) -> None:
    moves, th = [a for a in r["alerts"] if a["kind"] == "variation"], r["thresholds"]
    if not r["alerts"]:
        st.success("Aucun indicateur hors des seuils ni en retard sur sa trajectoire.")
    for a in (a for a in r["alerts"] if a["kind"] != "variation"):
        st.warning(review.alert_text(a), icon=":material/trending_down:")
    if moves:
        with st.expander(f"{len(moves)} variation(s) au-delà des seuils (± {fmt_number(th['share_points'] * 100)} pt "
                         f"pour les parts et taux, ± {fmt_number(th['amount_relative'] * 100)} % pour les montants "
                         "et volumes)", icon=":material/swap_vert:", expanded=len(moves) <= 5):
            st.markdown("\n".join(f"- {review.alert_text(a)}" for a in moves))


def comparisons(r: dict, month: str) -> None:
    st.subheader(f"Indicateurs de {month_label(month)}")
    flagged = {a["key"] for a in r["alerts"]}
    raw = pd.DataFrame(r["comparisons"])
    shown = pd.DataFrame({
        "Indicateur": [("⚠ " if k in flagged else "") + review.label(k) for k in raw["key"]],
        "Valeur": [review.show_value(k, v) for k, v in zip(raw["key"], raw["value"])],
        "Mois précédent": [review.show_value(k, v) for k, v in zip(raw["key"], raw["previous_month"])],
        "Écart": [review.show_delta(k, v) for k, v in zip(raw["key"], raw["delta_previous"])],
        "Même mois n-1": [review.show_value(k, v) for k, v in zip(raw["key"], raw["same_month_last_year"])],
        "Écart n-1": [review.show_delta(k, v) for k, v in zip(raw["key"], raw["delta_last_year"])],
        "Cumul annuel": [review.show_value(k, v) for k, v in zip(raw["key"], raw["ytd"])],
    })
    st.caption(f"Mois précédent : {r['previous_source']}. Écarts en points pour les parts et taux, en % pour "
               "les montants et volumes ; ⚠ : indicateur signalé.")
    st.dataframe(shown, hide_index=True, height=38 + 35 * len(raw), key="rev_comparisons_df",
                 column_config={"Indicateur": st.column_config.TextColumn(width="large")})
    _ui.downloads(raw, "rev_comparisons", f"revue {month}")


def revisions(r: dict) -> None:
    st.subheader("Révisions depuis l'instantané")
    if r["snapshot"] is None or not r["revisions"]:
        return st.caption("Pas d'instantané de ce mois : rien à réviser." if r["snapshot"] is None
                          else "Les données actuelles donnent les mêmes valeurs que l'instantané.")
    rv = pd.DataFrame(r["revisions"])
    shown = pd.DataFrame({
        "Indicateur": [review.label(k) for k in rv["key"]], "Portée": rv["scope"].map({"month": "mois", "ytd": "cumul annuel"}),
        "Instantané": [review.show_value(k, v) for k, v in zip(rv["key"], rv["snapshot"])],
        "Aujourd'hui": [review.show_value(k, v) for k, v in zip(rv["key"], rv["now"])],
    })
    st.info(f"{len(rv)} valeur(s) modifiée(s) par des imports postérieurs à l'instantané, qui reste inchangé.")
    _ui.table(rv, "rev_revisions", display=shown)


def data_changes(dc: dict) -> None:
    st.subheader("Ce qui a changé dans les données")
    st.caption(f"Depuis l'instantané n° {dc['since_snapshot_id']} (imports après le n° {dc['since_import_id']})."
               if dc.get("since_snapshot_id") else "Aucun instantané encore : tout l'historique des imports.")
    c1, c2, c3 = st.columns(3)
    c1.metric("Imports et annulations", fmt_number(len(dc["imports"])), border=True)
    c2.metric("Lignes rejetées", fmt_number(dc["rows_rejected"]), border=True)
    c3.metric("Nouveaux fournisseurs non identifiés", fmt_number(dc["new_unidentified_suppliers"]), border=True,
              help="Fournisseurs sans SIRET ni SIREN valide apparus dans les mandats importés depuis.")
    if dc["imports"]:
        imp = pd.DataFrame(dc["imports"])
        imp = imp.assign(status=imp["status"].map({"ok": "importé", "undone": "annulé"}),
                         **{c: imp[c].map(review.when_text) for c in ("finished_at", "undone_at")})
        _ui.table(imp, "rev_imports", ints=("rows_loaded", "rows_rejected"),
                  labels={"import_id": "N°", "kind": "Type", "file": "Fichier", "status": "État",
                          "rows_loaded": "Lignes", "rows_rejected": "Rejets", "finished_at": "Importé le",
                          "undone_at": "Annulé le"})
    if dc.get("rejected_by_reason"):
        _ui.table(pd.DataFrame(dc["rejected_by_reason"]), "rev_rejects", title="Motifs de rejet",
                  labels={"reason": "Motif", "rows": "Lignes"})


def snapshot_form(month: str) -> None:
    if not auth.is_analyst():
        return
    with st.form("rev_snapshot_form", clear_on_submit=True):
        st.markdown(f"**Figer les indicateurs de {month_label(month)}**")
        comment = st.text_area("Commentaire de la revue", key="rev_comment", max_chars=2000)
        if st.form_submit_button("Prendre l'instantané", type="primary"):
            take(month, comment.strip() or None)


def take(month: str, comment: str | None) -> None:
    try:
        auth.require_analyst()  # checked on the server, whatever the page showed
        snap = cached.write(review.take_snapshot, month, comment=comment)
    except auth.PermissionDenied as exc:
        return st.error(str(exc))
    st.session_state["rev_taken"] = f"Instantané n° {snap['snapshot_id']} ({month_label(month)}) enregistré."
    st.rerun()


def history(past: list[dict]) -> None:
    st.subheader("Instantanés")
    if not past:
        return st.caption("Aucun instantané pour l'instant.")
    df = pd.DataFrame(past).drop(columns=["indicators"])
    df = df.assign(month=df["month"].map(month_label), created_at=df["created_at"].map(review.when_text))
    _ui.table(df, "rev_history", labels={"snapshot_id": "N°", "month": "Mois", "created_at": "Pris le",
                                          "created_by": "Par", "comment": "Commentaire",
                                          "last_import_id": "Dernier import"})


_ui.guard(body, "Revue mensuelle")
