"""The Flask member API: the old half of the health plan's Flask-to-Django move."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask

from .config import load_config
from .extensions import db, migrate


def create_app(env: Mapping[str, str] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(load_config(env))

    db.init_app(app)
    # migrations/ sits next to app.py; `flask db ...` is run from flask_api/.
    migrate.init_app(app, db)

    from . import models  # noqa: F401  (registers the tables on db.metadata)
    from .api import bp as api_bp
    from .cli import register_commands

    app.register_blueprint(api_bp)
    register_commands(app)

    @app.after_request
    def served_by(response):  # lets callers (and tests) see which app answered
        response.headers["X-Served-By"] = "flask-api"
        return response

    return app
