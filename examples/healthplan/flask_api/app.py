"""Entry point for the Flask CLI and `flask run` (FLASK_APP=app.py)."""

from healthplan_flask import create_app

app = create_app()
