"""devenv's django-loaddata step: Django fixtures in the given order, one transaction; a
failure names the fixture file and the object.

Standalone: run by path with the app's interpreter, which may not have devenv installed,
so it imports nothing from devenv. Output is the step's log; problems go to stderr.
"""

# Django ships no type information; the app may not have django-stubs.
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import io
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

PROG = "django-loaddata"
_PROBLEM = re.compile(r"^Problem installing fixtures?(?: '(?P<file>[^']*)')?: ?", re.S)
_OBJECT = re.compile(r"^Could not load (?P<obj>[\w.]+\(pk=[^)]*\)): ", re.S)
_WITH_DATA = re.compile(r"^(?P<msg>.*): \((?P<model>[\w.]+):pk=(?P<pk>[^)]*)\) "
                        r"field_value was '(?P<value>.*)'$", re.S)
_KEY = re.compile(r"Key \((?P<cols>[^)]*)\)=\((?P<vals>[^)]*)\)")


if TYPE_CHECKING:
    from devenv.kinds import _django_common as common
else:
    # Run by path in the app's interpreter, which may lack devenv: this folder is
    # sys.path[0] until main() gives it to the app (shared.use_app_folder).
    import _django_common as common
fail = common.fail


def say(text: str) -> None:
    print(f"{PROG}: {text}", flush=True)


def _shown(path: str) -> str:
    """A path as the user wrote it: relative to the step's folder when inside it."""
    try:
        return os.path.relpath(path) if os.path.isabs(path) and not os.path.relpath(
            path).startswith("..") else path
    except ValueError:
        return path


def _db_error_text(exc: BaseException) -> str:
    """The server's message in one line: primary message, then its DETAIL."""
    cause = exc.__cause__ or exc.__context__
    diag = getattr(cause, "diag", None)
    if diag is not None and getattr(diag, "message_primary", None):
        text = str(diag.message_primary)
        if diag.message_detail:
            text += f" ({diag.message_detail})"
        return text
    return " ".join(str(exc).split())


def _object_for_key(saved: list[Any], exc: BaseException) -> str | None:
    """The object a deferred foreign-key check refused, found among those just saved."""
    cause = exc.__cause__ or exc.__context__
    diag = getattr(cause, "diag", None)
    if diag is None or not diag.table_name or not diag.message_detail:
        return None
    m = _KEY.search(diag.message_detail)
    if m is None:
        return None
    cols = [c.strip() for c in m.group("cols").split(",")]
    vals = [v.strip() for v in m.group("vals").split(",")]
    for obj in reversed(saved):
        meta = obj._meta
        if meta.db_table != diag.table_name:
            continue
        by_column = {f.column: f.attname for f in meta.concrete_fields}
        # zip without strict=: the app's interpreter may be older than Python 3.10.
        pairs = zip(cols, vals)  # noqa: B905
        if all(c in by_column and str(getattr(obj, by_column[c])) == v for c, v in pairs):
            return f"{meta.label}(pk={obj.pk})"
    return None


def prepare(opts: dict[str, Any]) -> list[tuple[str, str]]:
    """What needs no database: each fixture as written and as Django gets it (a missing
    file fails here), and loaddata's imports, so a warm start pays for them early."""
    from django.core import serializers
    from django.core.management.commands import loaddata  # noqa: F401

    serializers.get_serializer_formats()  # imports the serializers loaddata will use

    labels: list[tuple[str, str]] = []  # (as written, what Django gets)
    for fixture in opts["fixtures"]:
        path = Path(fixture)
        if "/" in fixture or (path.suffix and path.exists()):
            if not path.is_file():
                fail(f"fixture file not found: {fixture} (in {Path.cwd()})")
            labels.append((fixture, str(path.resolve())))
        else:
            labels.append((fixture, fixture))
    return labels


def run(labels: list[tuple[str, str]]) -> None:
    """Load the fixtures, in order, in one transaction."""
    from django.core.management import call_command
    from django.core.management.base import CommandError
    from django.db import DEFAULT_DB_ALIAS, connections, transaction
    from django.db.models.signals import post_save

    connection = connections[DEFAULT_DB_ALIAS]
    try:
        connection.ensure_connection()
    except Exception as exc:
        fail(f"cannot connect to the database: {common.first_line(exc)}")

    saved: list[Any] = []

    def remember(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
        if raw:
            saved.append(instance)

    post_save.connect(remember, weak=False, dispatch_uid="devenv-loaddata")
    total = 0
    try:
        # One transaction: a failing fixture leaves nothing half-loaded behind.
        with transaction.atomic(using=connection.alias):
            for shown, label in labels:
                saved.clear()
                out = io.StringIO()
                try:
                    call_command("loaddata", label, verbosity=1, stdout=out)
                except CommandError as exc:
                    fail(f"{shown}: {exc}")
                except Exception as exc:
                    message = " ".join(str(exc).split())
                    m = _PROBLEM.match(message)
                    where = shown
                    if m is not None:
                        if m.group("file"):
                            where = _shown(m.group("file"))
                        message = message[m.end():]
                    obj = None
                    om = _OBJECT.match(message)
                    if om is not None:
                        obj = om.group("obj")
                        message = message[om.end():]
                    wm = _WITH_DATA.match(message)
                    if wm is not None:
                        # Deserialisation: "(app.model:pk=3) field_value was 'x'"
                        obj = f"{wm.group('model')}(pk={wm.group('pk')})"
                        message = f"{wm.group('msg')} (value '{wm.group('value')}')"
                    cause = exc.__cause__ or exc.__context__
                    if getattr(cause, "diag", None) is not None:
                        message = _db_error_text(exc)
                    elif not message.strip() and cause is not None:
                        message = f"{type(cause).__name__}: {cause}"
                    obj = obj or _object_for_key(saved, exc)
                    fail(f"{where}: {obj + ': ' if obj else ''}{message}\n"
                         f"{PROG}: nothing was loaded (the fixtures load in one transaction)")
                text = out.getvalue().strip()
                n = re.search(r"Installed (\d+) object", text)
                total += int(n.group(1)) if n else 0
                say(f"{shown}: {text or 'no objects'}")
    finally:
        post_save.disconnect(dispatch_uid="devenv-loaddata")
    say(f"done: {total} objects from {len(labels)} fixture{'s' if len(labels) != 1 else ''}")


def main(argv: list[str]) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if len(argv) != 2:
        print(f"usage: {argv[0]} JSON (devenv runs this script for kind django-loaddata)",
              file=sys.stderr)
        return 2
    opts = json.loads(argv[1])
    try:
        common.setup(opts)
        labels = prepare(opts)
        if not common.warm_wait():
            return 0  # not needed after all: the database stays untouched
        run(labels)
    except common.Fail as exc:
        print(f"{PROG}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
