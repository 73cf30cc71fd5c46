"""Django set-up shared by devenv's Django scripts. Standalone: runs in the app's own
interpreter, which may not have devenv installed, so it imports nothing from devenv.
Imported by name: the scripts' folder is sys.path[0] when they start."""

# Django ships no type information; the app may not have django-stubs.
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

_SETTINGS_IN_MANAGE = re.compile(
    r"""DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([A-Za-z_][\w.]*)['"]""")


# The Django scripts reach these through this module (one load, one name).
if TYPE_CHECKING:
    from devenv.kinds import _script_common
else:
    # Run by path in the app's interpreter, which may lack devenv: this folder is
    # sys.path[0] until main() gives it to the app (shared.use_app_folder).
    import _script_common
shared = _script_common
Fail = shared.Fail


def fail(message: str) -> NoReturn:
    raise Fail(message)


warm_wait = shared.warm_wait
first_line = shared.first_line


def settings_from_manage(manage: Path) -> str | None:
    """The settings module manage.py would use (its ``os.environ.setdefault`` line)."""
    try:
        text = manage.read_text(errors="replace")
    except OSError:
        return None
    m = _SETTINGS_IN_MANAGE.search(text)
    return m.group(1) if m else None


def setup(opts: dict[str, Any]) -> str:
    """Put the project on sys.path, pick the settings, ``django.setup()``; returns the
    settings module name."""
    manage = Path(opts.get("manage") or "manage.py")
    cwd = Path.cwd()
    settings = opts.get("settings") or os.environ.get("DJANGO_SETTINGS_MODULE")
    if manage.is_file():
        project_dir = manage.resolve().parent
        settings = settings or settings_from_manage(manage)
    elif settings:
        project_dir = cwd
    else:
        fail(f"{manage} not found in {cwd}: set manage: to the project's manage.py, or "
             "settings: to its settings module (and cwd: to the folder that holds it)")
    if not settings:
        fail(f"cannot tell the settings module: {manage} does not set "
             "DJANGO_SETTINGS_MODULE; set settings: (e.g. mysite.settings)")
    # exactly as running manage.py does
    shared.use_app_folder(str(project_dir))
    os.environ["DJANGO_SETTINGS_MODULE"] = settings
    try:
        import django
    except ImportError:
        fail(f"Django is not installed for {sys.executable}; set python: to the app's "
             "virtualenv (or its interpreter)")
    try:
        django.setup()
    except ModuleNotFoundError as exc:
        fail(f"cannot import the settings module '{settings}' (from {project_dir}): {exc}")
    except Exception as exc:  # ImproperlyConfigured, errors in the settings file
        fail(f"Django could not start with settings '{settings}': "
             f"{type(exc).__name__}: {exc}")
    return settings


