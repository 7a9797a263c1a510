"""Who may do what: readers see the dashboards, analysts also change the data.

Login is off by default (one analyst on a local machine: every action is allowed).
It is on when both exist:

* an ``[auth]`` section in ``.streamlit/secrets.toml`` (Streamlit's ``st.login``, OIDC);
* a roles file, ``config/roles.toml`` (or the path in ``EMPREINTE_ROLES``), mapping
  e-mails to ``reader`` or ``analyst`` (see ``config/roles.example.toml``).

Every action that writes (import, undo, targets, buyer territory) calls
:func:`require_analyst` on the server before doing anything: hiding a page or a
button is a convenience, not the check.

``EMPREINTE_ROLE=reader|analyst`` forces the role of every session (tests, or a
read-only kiosk deployment). It is read from the server's environment only.

This module reads ``st.user`` and ``st.secrets``; the role rules themselves
(:func:`role_for_email`) are plain Python.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROLES_FILE = ROOT / "config" / "roles.toml"
ROLES = ("reader", "analyst")
LOCAL_USER = "analyste local"


class PermissionDenied(Exception):
    """The current user may not do this; message in French."""


def roles_file() -> Path:
    env = os.environ.get("EMPREINTE_ROLES")
    return Path(env) if env else DEFAULT_ROLES_FILE


def load_roles(path: Path | None = None) -> dict | None:
    """The roles configuration ({'default': role|None, 'roles': {email: role}}), or None."""
    path = path or roles_file()
    if not path.exists():
        return None
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    roles = {str(k).strip().lower(): str(v).strip().lower() for k, v in data.get("roles", {}).items()}
    default = str(data.get("default", "") or "").strip().lower() or None
    return {"default": default if default in ROLES else None, "roles": roles}


def role_for_email(email: str | None, config: dict) -> str | None:
    """The role of an e-mail: exact address first, then '@domain', then the default."""
    if not email:
        return None
    email = email.strip().lower()
    roles = config.get("roles", {})
    role = roles.get(email)
    if role is None and "@" in email:
        role = roles.get("@" + email.split("@", 1)[1])
    if role is None:
        role = config.get("default")
    return role if role in ROLES else None


def _auth_configured() -> bool:
    import streamlit as st

    try:
        return bool(st.secrets.get("auth"))
    except Exception:  # no secrets.toml at all
        return False


def login_enabled() -> bool:
    """True when both the OIDC section and the roles file are present."""
    return _auth_configured() and load_roles() is not None


def _user() -> dict:
    import streamlit as st

    try:
        return st.user.to_dict()
    except Exception:
        return {}


def is_logged_in() -> bool:
    return bool(_user().get("is_logged_in"))


def current_role() -> str | None:
    """'analyst', 'reader', or None (logged out, or an e-mail with no role)."""
    forced = os.environ.get("EMPREINTE_ROLE", "").strip().lower()
    if forced in ROLES:
        return forced
    if not login_enabled():
        return "analyst"
    user = _user()
    if not user.get("is_logged_in"):
        return None
    return role_for_email(user.get("email"), load_roles() or {})


def who() -> str:
    """The name recorded in the ledger for an action."""
    if login_enabled():
        user = _user()
        return str(user.get("email") or user.get("name") or "inconnu")
    return os.environ.get("EMPREINTE_USER", LOCAL_USER)


def is_analyst() -> bool:
    return current_role() == "analyst"


def require_analyst() -> str:
    """Raise PermissionDenied unless the current user is an analyst; return who acts."""
    if current_role() != "analyst":
        raise PermissionDenied(
            "Action réservée aux analystes : votre profil permet de consulter les tableaux de bord "
            "mais pas de modifier les données."
        )
    return who()


def role_label(role: str | None) -> str:
    return {"analyst": "analyste", "reader": "lecteur"}.get(role or "", "aucun accès")
