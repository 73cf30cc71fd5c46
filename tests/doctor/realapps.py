"""Two throw-away apps shaped like the ones a first trial used, in one database, two schemas.

``api/``: a Flask app on plain SQLAlchemy (its own engine and declarative base in db.py, no
Flask-SQLAlchemy), migrated by plain Alembic (``alembic.ini`` + ``migrations/env.py``, which
puts its tables and version table in schema ``flask``), with a ``fake users N`` command.
``web/``: a Django project whose ``blog`` app lives in schema ``django`` (search_path in
its settings). The two share no table.
"""

from __future__ import annotations

from typing import Any

DB_PY = '''import os

from sqlalchemy import create_engine
from sqlalchemy.orm import DeclarativeBase, sessionmaker


class Base(DeclarativeBase):
    pass


engine = create_engine(
    os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1),
    connect_args={"options": "-csearch_path=flask"})
Session = sessionmaker(engine)
'''

MODELS_PY = '''from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from db import Base


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    email: Mapped[str | None] = mapped_column(String(120))


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(200))
'''

APP_PY = '''import os

import click
from flask import Flask

from db import Session
from models import User

app = Flask(__name__)
app.config["JWT_SECRET"] = os.environ.get("JWT_SECRET", "")


@app.cli.group()
def fake():
    """Fake data."""


@fake.command("users")
@click.argument("n", type=int)
def users(n):
    with Session.begin() as session:
        session.add_all(User(name=f"user {i}") for i in range(n))
'''

ALEMBIC_INI = '''[alembic]
script_location = migrations
prepend_sys_path = .

[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console
qualname =

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
'''

ENV_PY = '''from alembic import context

import models  # noqa: F401  (registers the tables on Base.metadata)
from db import Base, engine

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      version_table_schema="flask")
    with context.begin_transaction():
        context.run_migrations()
'''

REV_0001 = '''"""users and posts"""
from alembic import op
import sqlalchemy as sa

revision = "0001_users"
down_revision = None


def upgrade():
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("email", sa.String(120)),
    )
    op.create_table(
        "posts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
    )
'''

REV_0002 = '''"""users.age"""
from alembic import op
import sqlalchemy as sa

revision = "0002_age"
down_revision = "0001_users"


def upgrade():
    op.add_column("users", sa.Column("age", sa.Integer()))
'''

MANAGE = '''#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_cfg.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
'''

SETTINGS = '''import os
import urllib.parse

_url = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/"),
        "USER": urllib.parse.unquote(_url.username or ""),
        "PASSWORD": urllib.parse.unquote(_url.password or ""),
        "HOST": _url.hostname,
        "PORT": _url.port,
        "OPTIONS": {"options": "-c search_path=django"},
    }
}
SECRET_KEY = "test-only"
INSTALLED_APPS = ["blog"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
'''

BLOG_MODELS = '''from django.db import models


class Article(models.Model):
    title = models.CharField(max_length=200)
    body = models.TextField()
'''

BLOG_0001 = '''from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Article",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True,
                                           serialize=False, verbose_name="ID")),
                ("title", models.CharField(max_length=200)),
                ("body", models.TextField()),
            ],
        ),
    ]
'''

FILES: dict[str, str] = {
    "api/db.py": DB_PY,
    "api/models.py": MODELS_PY,
    "api/app.py": APP_PY,
    "api/alembic.ini": ALEMBIC_INI,
    "api/migrations/env.py": ENV_PY,
    "api/migrations/versions/0001_users.py": REV_0001,
    "web/manage.py": MANAGE,
    "web/site_cfg/__init__.py": "",
    "web/site_cfg/settings.py": SETTINGS,
    "web/blog/__init__.py": "",
    "web/blog/models.py": BLOG_MODELS,
    "web/blog/migrations/__init__.py": "",
    "web/blog/migrations/0001_initial.py": BLOG_0001,
}


def config(name: str, db: str) -> dict[str, Any]:
    """steps.yaml as a user wrote it for these apps: typed kinds, two schemas."""
    return {
        "version": 1,
        "name": name,
        "services": {"db": {"image": "postgres:15", "env": {"POSTGRES_PASSWORD": "x"}}},
        "database": {"service": "db", "name": db, "schemas": ["flask", "django"]},
        "steps": {
            "flask-migrate": {"kind": "alembic", "cwd": "api", "config": "alembic.ini"},
            "fake-users": {"kind": "flask-command", "cwd": "api", "flask_app": "app.py",
                           "command": "fake", "args": ["users", "5"],
                           "needs": ["flask-migrate"], "inputs": ["api/app.py"]},
            "django-migrate": {"kind": "django-migrate", "cwd": "web",
                               "settings": "site_cfg.settings"},
        },
    }
