"""Roles: login off by default (local analyst); with OIDC + roles file, readers may not write.

The login itself (st.login, OIDC) is not exercised: AppTest sets ``st.user`` and
``st.secrets`` directly, which is what the app reads after a real login.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from analytics import auth

ROLES = """
default = ""
[roles]
"analyste@ville.fr" = "analyst"
"@ville.fr" = "reader"
"""
SECRETS = {
    "auth": {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "x",
        "client_id": "x",
        "client_secret": "x",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
    }
}


@pytest.fixture
def roles_file(tmp_path, monkeypatch):
    p = tmp_path / "roles.toml"
    p.write_text(ROLES, encoding="utf-8")
    monkeypatch.setenv("EMPREINTE_ROLES", str(p))
    monkeypatch.delenv("EMPREINTE_ROLE", raising=False)
    return p


def test_role_for_email_precedence(roles_file):
    config = auth.load_roles(roles_file)
    assert auth.role_for_email("analyste@ville.fr", config) == "analyst"
    assert auth.role_for_email("ANALYSTE@Ville.fr ", config) == "analyst"
    assert auth.role_for_email("elu@ville.fr", config) == "reader"  # domain rule
    assert auth.role_for_email("someone@else.fr", config) is None  # default "" = no access
    assert auth.role_for_email(None, config) is None
    assert auth.role_for_email("x@else.fr", {**config, "default": "reader"}) == "reader"


def _probe():
    import streamlit as st

    from analytics import auth

    st.text(f"role={auth.current_role()}")
    st.text(f"login={auth.login_enabled()}")
    try:
        st.text(f"who={auth.require_analyst()}")
    except auth.PermissionDenied as exc:
        st.text(f"denied={exc}")


def _run_probe(secrets=None, user=None) -> dict:
    at = AppTest.from_function(_probe, default_timeout=30)
    if secrets:
        at.secrets = secrets
    if user is not None:
        at.user = user
    at.run()
    assert not at.exception
    return dict(t.value.split("=", 1) for t in at.text)


def test_login_off_by_default_everyone_is_analyst(monkeypatch, tmp_path):
    monkeypatch.setenv("EMPREINTE_ROLES", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("EMPREINTE_ROLE", raising=False)
    out = _run_probe()
    assert out["role"] == "analyst" and out["login"] == "False"
    assert out["who"] == auth.LOCAL_USER


def test_roles_file_without_oidc_keeps_login_off(roles_file):
    out = _run_probe()
    assert out["login"] == "False" and out["role"] == "analyst"


def test_logged_in_reader_is_denied(roles_file):
    out = _run_probe(SECRETS, {"is_logged_in": True, "email": "elu@ville.fr"})
    assert out["login"] == "True" and out["role"] == "reader"
    assert "réservée aux analystes" in out["denied"]


def test_logged_in_analyst_may_write(roles_file):
    out = _run_probe(SECRETS, {"is_logged_in": True, "email": "analyste@ville.fr"})
    assert out["role"] == "analyst" and out["who"] == "analyste@ville.fr"


def test_logged_out_and_unknown_have_no_role(roles_file):
    assert _run_probe(SECRETS, {"is_logged_in": False})["role"] == "None"
    assert _run_probe(SECRETS, {"is_logged_in": True, "email": "x@else.fr"})["role"] == "None"


def test_env_override(roles_file, monkeypatch):
    monkeypatch.setenv("EMPREINTE_ROLE", "reader")
    out = _run_probe()
    assert out["role"] == "reader" and "denied" in out


def test_dashboard_asks_to_log_in(roles_file, tmp_path, monkeypatch):
    monkeypatch.setenv("EMPREINTE_DB", str(tmp_path / "x.duckdb"))
    at = AppTest.from_file("../dashboard.py", default_timeout=60)
    at.secrets = SECRETS
    at.user = {"is_logged_in": False}
    at.run()
    assert not at.exception
    assert at.button(key="login").label == "Se connecter"
    assert not at.metric  # no figure before login
    at.user = {"is_logged_in": True, "email": "x@else.fr"}
    at.run()
    assert "pas d'accès" in at.error[0].value
