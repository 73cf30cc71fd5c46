"""Test repositories shaped like two real apps, for ``devenv init``.

* ``api/``: a Flask app on plain SQLAlchemy (no Flask-SQLAlchemy) with a plain Alembic
  ``alembic.ini`` + ``migrations/env.py`` that builds its own engine from DATABASE_URL,
  and a click group ``fake`` with ``fake users N``;
* ``web/``: a Django project with two apps (blog, shop), three migrations, fixtures, a
  ``fake COUNT`` management command, database settings read from ``DB_*`` variables and
  a SECRET_KEY it cannot start without.

Each app has its own virtualenv (``--system-site-packages``, so the Flask and Django
installed on this machine are visible in it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

API = {
    "api/requirements.txt": "flask\nsqlalchemy\nalembic\npsycopg\n",
    "api/db.py": '''
import os

from sqlalchemy import create_engine


def url() -> str:
    raw = os.environ.get("DATABASE_URL", "postgresql://localhost/api")
    return raw.replace("postgresql://", "postgresql+psycopg://", 1)


engine = create_engine(url())
''',
    "api/app.py": '''
"""The API: Flask on plain SQLAlchemy."""
import click
from flask import Flask, jsonify
from sqlalchemy import text

from db import engine

app = Flask(__name__)


@app.get("/users/count")
def users_count():
    with engine.connect() as conn:
        return jsonify(n=conn.execute(text("select count(*) from users")).scalar())


@app.cli.group()
def fake():
    """Fake data."""


@fake.command("users")
@click.argument("n", type=int)
def fake_users(n):
    with engine.begin() as conn:
        for i in range(n):
            conn.execute(text("insert into users (name) values (:n)"), {"n": f"user{i}"})
''',
    "api/alembic.ini": "[alembic]\nscript_location = migrations\n",
    "api/migrations/env.py": '''
import os
import sys

from alembic import context
from sqlalchemy import create_engine

print("api migrations run by", sys.prefix, flush=True)
url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
engine = create_engine(url)
with engine.connect() as conn:
    context.configure(connection=conn, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
''',
    "api/migrations/versions/0001_users.py": '''
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade():
    op.create_table("users", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("name", sa.Text, nullable=False))


def downgrade():
    op.drop_table("users")
''',
    "api/migrations/versions/0002_posts.py": '''
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade():
    op.create_table("posts", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id")),
                    sa.Column("body", sa.Text))


def downgrade():
    op.drop_table("posts")
''',
}

WEB = {
    "web/requirements.txt": "django\npsycopg\n",
    "web/manage.py": '''
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webcfg.settings")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)
''',
    "web/webcfg/__init__.py": "",
    "web/webcfg/settings.py": '''
import os

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "blog", "shop"]
ROOT_URLCONF = "webcfg.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("DB_HOST", "localhost"),
        "PORT": os.environ.get("DB_PORT", "5432"),
        "NAME": os.environ.get("DB_NAME", "web"),
        "USER": os.environ.get("DB_USER", "web"),
        "PASSWORD": os.environ.get("DB_PASSWORD", ""),
    }
}
''',
    "web/webcfg/urls.py": '''
from django.http import HttpResponse
from django.urls import path


def health(request):
    return HttpResponse("ok")


urlpatterns = [path("health/", health)]
''',
    "web/blog/__init__.py": "",
    "web/blog/models.py": '''
from django.db import models


class Post(models.Model):
    title = models.CharField(max_length=100)
''',
    "web/blog/migrations/__init__.py": "",
    "web/blog/migrations/0001_initial.py": '''
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(name="Post", fields=[
            ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
            ("title", models.CharField(max_length=100)),
        ]),
    ]
''',
    "web/blog/fixtures/posts.json":
        '[{"model": "blog.post", "pk": 1, "fields": {"title": "Hello"}},'
        ' {"model": "blog.post", "pk": 2, "fields": {"title": "Again"}}]',
    "web/shop/__init__.py": "",
    "web/shop/models.py": '''
from django.db import models


class Product(models.Model):
    name = models.CharField(max_length=100)
    price = models.IntegerField(default=0)
''',
    "web/shop/migrations/__init__.py": "",
    "web/shop/migrations/0001_initial.py": '''
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(name="Product", fields=[
            ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
            ("name", models.CharField(max_length=100)),
        ]),
    ]
''',
    "web/shop/migrations/0002_price.py": '''
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]
    operations = [migrations.AddField("product", "price", models.IntegerField(default=0))]
''',
    "web/shop/fixtures/products.json":
        '[{"model": "shop.product", "pk": 1, "fields": {"name": "Mug", "price": 7}},'
        ' {"model": "shop.product", "pk": 2, "fields": {"name": "Pen", "price": 2}},'
        ' {"model": "shop.product", "pk": 3, "fields": {"name": "Pad", "price": 3}}]',
    "web/shop/management/__init__.py": "",
    "web/shop/management/commands/__init__.py": "",
    "web/shop/management/commands/fake.py": '''
from django.core.management.base import BaseCommand

from shop.models import Product


class Command(BaseCommand):
    help = "Fake products."

    def add_arguments(self, parser):
        parser.add_argument("count", type=int)
        parser.add_argument("--prefix", default="p")

    def handle(self, count, prefix, **options):
        Product.objects.bulk_create(Product(name=f"{prefix}{i}") for i in range(count))
''',
}


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text.lstrip("\n"))


def make_venv(folder: Path) -> None:
    """A virtualenv that sees this machine's packages (Flask, Django, alembic)."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(folder / ".venv")], check=True, timeout=120)


def build(root: Path, venvs: bool = True) -> Path:
    """Both apps under ``root``; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    write(root, API)
    write(root, WEB)
    if venvs:
        make_venv(root / "api")
        make_venv(root / "web")
    return root
