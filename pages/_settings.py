"""The buyer and its territory (an analyst's setting, shown on the Import page). Not a page."""

import streamlit as st

from analytics import auth, cached


def buyer_settings(done) -> None:
    st.subheader("Acheteur et territoire")
    b = cached.buyer() or {}
    st.caption(
        f"Actuel : {b.get('name') or 'non configuré'} ({b.get('siret') or '–'}), territoire : "
        f"{b.get('territory_label') or 'non défini'}."
    )
    with st.form("imp_buyer_form"):
        siret = st.text_input(
            "SIRET ou SIREN de l'acheteur", value=b.get("siret") or "", key="imp_buyer_siret"
        )
        name = st.text_input("Nom", value=b.get("name") or "", key="imp_buyer_name")
        terr = st.text_input(
            "Territoire (vide : proposé d'après le SIREN)",
            key="imp_buyer_terr",
            value=_territory_text(b),
            help="dep:59, dep:59,62, reg:32, epci:SIREN ou com:CODE,…",
        )
        if st.form_submit_button("Enregistrer"):
            from analytics import referential
            from analytics.filters import Territory

            try:
                t = Territory.parse(terr) if terr.strip() else None
                out = cached.write(referential.set_buyer, siret=siret, territory=t, name=name or None)
            except (ValueError, auth.PermissionDenied) as exc:
                st.error(str(exc))
                return
            done(f"Acheteur enregistré ; territoire : {out.get('territory_label') or 'non défini'}.")


def _territory_text(b: dict) -> str:
    t = b.get("territory")
    return f"{t['kind']}:{','.join(t['codes'])}" if t else ""
