"""Settings for the Django half of the health plan API.

Django sits in front (port 8000), serves what has been moved to it, and forwards every
other request to the Flask app (FLASK_URL). Both share one PostgreSQL database:

* public         -- Flask's tables (members, plans, enrollments, claims, member_notes)
* internal_apps  -- Django's own tables (auth, sessions, crm) and django_migrations
* billing        -- loaded by billing/load_billing.py, not mapped by either app

Django's tables land in internal_apps because the connection's search_path starts with
it: unqualified CREATE TABLE goes to the first schema on the path. Models over Flask's
tables name their schema explicitly (db_table = 'public"."members'), so they resolve to
public whatever the search_path -- including shared.MemberNote, whose CreateModel
migration therefore collides with the table Flask created (hence `migrate --fake`).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-django-secret-key-not-for-production")
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "core",
    "shared",
    "crm",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "healthplan_site.urls"
WSGI_APPLICATION = "healthplan_site.wsgi.application"
# The proxy catches every unknown path; a redirect to add a slash would hide Flask's routes.
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DEFAULT_DATABASE_URL = "postgresql://postgres:devenv@127.0.0.1:5432/healthplan_dev"
SEARCH_PATH = "internal_apps,public"


def database_from_url(url: str) -> dict:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"DATABASE_URL must be postgresql://..., not {parts.scheme}://")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        # Overrides PGOPTIONS from the environment: Django's tables must not land elsewhere.
        "OPTIONS": {"options": f"-c search_path={SEARCH_PATH}"},
    }


DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

# Shared with Flask: tokens Django issues must verify there.
JWT_SECRET = os.environ.get("JWT_SECRET", "")
JWT_ISSUER = "healthplan-django"
JWT_AUDIENCE = "healthplan-api"
JWT_LIFETIME_SECONDS = int(os.environ.get("JWT_LIFETIME_SECONDS", "3600"))

# Where requests Django does not serve go.
FLASK_URL = os.environ.get("FLASK_URL", "http://127.0.0.1:5001").rstrip("/")
PROXY_TIMEOUT_SECONDS = float(os.environ.get("PROXY_TIMEOUT_SECONDS", "30"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
