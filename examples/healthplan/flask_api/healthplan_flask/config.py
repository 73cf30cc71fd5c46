"""Configuration from the environment.

DATABASE_URL is the plain libpq form (postgresql://user:pass@host:port/db) that every
tool in the repo shares; SQLAlchemy needs the driver spelled out, so it is converted here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

DEFAULT_DATABASE_URL = "postgresql://postgres:devenv@127.0.0.1:5432/healthplan_dev"

# The Flask app owns the public schema and never looks anywhere else. Pinning the
# search_path on the connection (rather than trusting PGOPTIONS) keeps `flask db upgrade`
# from creating tables in another schema when run with a different environment.
SEARCH_PATH = "public"


def sqlalchemy_url(url: str) -> str:
    """postgresql://... (or postgres://...) -> postgresql+psycopg://... (psycopg 3)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"DATABASE_URL is not a URL: {url!r}")
    if scheme in ("postgres", "postgresql", "postgresql+psycopg2"):
        scheme = "postgresql+psycopg"
    return f"{scheme}://{rest}"


def load_config(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if env is None else env
    return {
        "SQLALCHEMY_DATABASE_URI": sqlalchemy_url(env.get("DATABASE_URL", DEFAULT_DATABASE_URL)),
        "SQLALCHEMY_ENGINE_OPTIONS": {
            "connect_args": {"options": f"-c search_path={SEARCH_PATH}"},
            "pool_pre_ping": True,
        },
        # No default: a token check without a secret must fail, not silently accept.
        "JWT_SECRET": env.get("JWT_SECRET"),
        "JSON_SORT_KEYS": False,
    }
