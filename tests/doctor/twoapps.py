"""A throw-away monorepo in the example's shape, small enough to build in seconds.

``flask_app/``: Flask + Flask-SQLAlchemy + Flask-Migrate; its Alembic revision 0001
creates ``members`` and ``notes``. ``django_app/``: a Django project whose ``people`` app
maps ``members`` read-only (``managed = False``) and manages ``notes`` too, so its
``0001_initial`` must be faked after Flask made the table (the example's member_notes
case); its ``extras`` app has tables of its own (``extras_tag``). Both apps read ``JWT_SECRET``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FLASK_APP = '''import os

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()


class Member(db.Model):
    __tablename__ = "members"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(80), nullable=False)
    phone = db.Column(db.String(20))


class Note(db.Model):
    __tablename__ = "notes"
    id = db.Column(db.Integer, primary_key=True)
    member_id = db.Column(db.Integer, db.ForeignKey("members.id"), nullable=False)
    body = db.Column(db.Text, nullable=False)


def create_app():
    app = Flask(__name__)
    url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    app.config["JWT_SECRET"] = os.environ.get("JWT_SECRET")
    db.init_app(app)
    Migrate(app, db)
    return app


app = create_app()
'''

ALEMBIC_INI = '''[alembic]

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
from flask import current_app

migrate_ext = current_app.extensions["migrate"]
with migrate_ext.db.engine.connect() as connection:
    context.configure(connection=connection, target_metadata=migrate_ext.db.metadata)
    with context.begin_transaction():
        context.run_migrations()
'''

REV_0001 = '''"""members and notes"""
from alembic import op
import sqlalchemy as sa

revision = "0001_members"
down_revision = None


def upgrade():
    op.create_table(
        "members",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("phone", sa.String(20)),
    )
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("member_id", sa.Integer(), sa.ForeignKey("members.id"), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
    )


def downgrade():
    op.drop_table("notes")
    op.drop_table("members")
'''


def alembic_revision(rev: str, down: str, column: str) -> str:
    """A revision adding a nullable integer ``column`` to members."""
    return f'''"""add {column}"""
from alembic import op
import sqlalchemy as sa

revision = "{rev}"
down_revision = "{down}"


def upgrade():
    op.add_column("members", sa.Column("{column}", sa.Integer()))


def downgrade():
    op.drop_column("members", "{column}")
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
    }
}
SECRET_KEY = "test-only"
INSTALLED_APPS = ["people", "extras"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
JWT_SECRET = os.environ.get("JWT_SECRET", "")
'''

MODELS = '''from django.db import models


class Member(models.Model):
    id = models.AutoField(primary_key=True)
    name = models.CharField(max_length=80)
    phone = models.CharField(max_length=20, null=True)

    class Meta:
        managed = False
        db_table = "members"


class Note(models.Model):
    id = models.AutoField(primary_key=True)
    member = models.ForeignKey(Member, on_delete=models.CASCADE)
    body = models.TextField()

    class Meta:
        db_table = "notes"
'''

EXTRAS_MODELS = '''from django.db import models


class Tag(models.Model):
    name = models.CharField(max_length=30)
'''

DJ_0001 = '''from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Member",
            fields=[
                ("id", models.AutoField(primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=80)),
                ("phone", models.CharField(max_length=20, null=True)),
            ],
            options={"managed": False, "db_table": "members"},
        ),
        migrations.CreateModel(
            name="Note",
            fields=[
                ("id", models.AutoField(primary_key=True, serialize=False)),
                ("body", models.TextField()),
                ("member", models.ForeignKey(on_delete=models.deletion.CASCADE,
                                             to="people.member")),
            ],
            options={"db_table": "notes"},
        ),
    ]
'''

EXTRAS_0001 = '''from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Tag",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True,
                                           serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=30)),
            ],
        ),
    ]
'''

EXTRAS_0002 = '''from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("extras", "0001_initial")]
    operations = [
        migrations.AddField(model_name="tag", name="colour",
                            field=models.CharField(max_length=10, default="red")),
    ]
'''

FILES: dict[str, str] = {
    "flask_app/app.py": FLASK_APP,
    "flask_app/migrations/alembic.ini": ALEMBIC_INI,
    "flask_app/migrations/env.py": ENV_PY,
    "flask_app/migrations/versions/0001_members.py": REV_0001,
    "django_app/manage.py": MANAGE,
    "django_app/site_cfg/__init__.py": "",
    "django_app/site_cfg/settings.py": SETTINGS,
    "django_app/people/__init__.py": "",
    "django_app/people/models.py": MODELS,
    "django_app/people/migrations/__init__.py": "",
    "django_app/people/migrations/0001_initial.py": DJ_0001,
    "django_app/extras/__init__.py": "",
    "django_app/extras/models.py": EXTRAS_MODELS,
    "django_app/extras/migrations/__init__.py": "",
    "django_app/extras/migrations/0001_initial.py": EXTRAS_0001,
}


def config(name: str, db: str) -> dict[str, Any]:
    """steps.yaml: Flask migrates, Django fakes its first migration, then migrates."""
    return {
        "version": 1,
        "name": name,
        "services": {"db": {"image": "postgres:15", "env": {"POSTGRES_PASSWORD": "x"}}},
        "database": {"service": "db", "name": db},
        "env": {"JWT_SECRET": "shared-test-secret-0123456789abcdef"},
        "steps": {
            "flask-migrate": {"run": "flask db upgrade", "cwd": "flask_app",
                              "env": {"FLASK_APP": "app.py"},
                              "inputs": ["flask_app/migrations/**"]},
            "django-fake": {"run": "python manage.py migrate people 0001 --fake",
                            "cwd": "django_app", "needs": ["flask-migrate"],
                            "inputs": ["django_app/people/migrations/0001_initial.py"]},
            "django-migrate": {"run": "python manage.py migrate", "cwd": "django_app",
                               "needs": ["django-fake"],
                               "inputs": ["django_app/*/migrations/**"]},
        },
        "processes": {
            "api": {"run": "flask run --port 5999", "cwd": "flask_app",
                    "env": {"FLASK_APP": "app.py"}},
        },
    }


def edit(root: Path, rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text()
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new))
