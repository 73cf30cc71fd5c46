"""``devenv init``: draft steps.yaml and services/postgres.yaml from a repository's apps.

Detection (:mod:`devenv.init.detect`) only reads files; the draft
(:mod:`devenv.init.draft`) is loaded by the real loader before anything is written, so a
draft that devenv itself would refuse never reaches the disk.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from devenv import config_schema, loader
from devenv.console import Output
from devenv.errors import EXIT_FAILED, EXIT_OK, ConfigError, DevenvError, UsageError
from devenv.init import detect, draft


def existing_postgres_service(root: Path) -> str | None:
    """The name of a services/NAME.yaml that already runs PostgreSQL, if there is one."""
    folder = root / loader.SERVICES_DIR
    if not folder.is_dir():
        return None
    for p in sorted(folder.glob("*.y*ml")):
        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(doc, dict) and "postgres" in str(doc.get("image", "")).lower():
            return p.stem
    return None


def make_draft(root: Path, only: list[Path] | None = None) -> tuple[list[detect.App],
                                                                      draft.Draft]:
    """What init finds and would write; the draft is checked by the loader."""
    apps = detect.detect(root, only)
    result = draft.make(root, apps, service_exists=existing_postgres_service(root))
    if apps:
        services = [(Path(n).stem, n, t) for n, t in result.files.items()
                    if n.startswith(f"{loader.SERVICES_DIR}/")]
        services += [(p.stem, f"{loader.SERVICES_DIR}/{p.name}", p.read_text("utf-8"))
                     for p in sorted((root / loader.SERVICES_DIR).glob("*.y*ml"))
                     if (root / loader.SERVICES_DIR).is_dir()
                     and f"{loader.SERVICES_DIR}/{p.name}" not in result.files]
        try:
            loader.load_text(result.files["steps.yaml"], root, root / loader.CONFIG_NAME,
                             services)
        except ConfigError as exc:
            raise DevenvError(f"the draft does not load, a devenv init bug: {exc}") from None
    return apps, result


def run(out: Output, root: Path, only: list[Path] | None = None, *, force: bool = False,
        check: bool = False) -> int:
    """Exit 0: written (or, with ``check``, would be written); 1: no app found, or with
    ``check`` a file is in the way; 2: a file is in the way (without ``force``)."""
    if not root.is_dir():
        raise UsageError(f"no such folder: {root}")
    # --app folders are taken relative to the repository when they are there.
    only = [root / p if not p.is_absolute() and (root / p).is_dir() else p
            for p in only or []]
    for p in only:
        if not p.is_dir():
            raise UsageError(f"no such folder: {p} (--app takes an app's folder)")
    root = root.resolve()
    apps, result = make_draft(root, only or None)
    if not apps:
        out.error(f"no Django project (manage.py), Flask app or alembic.ini found under "
                  f"{root}; nothing written")
        return EXIT_FAILED
    in_the_way = [n for n in result.files if (root / n).exists()]
    # An existing services/postgres.yaml is reused as it is, not overwritten.
    blocking = [n for n in in_the_way if n == loader.CONFIG_NAME]
    if check:
        for name, text in result.files.items():
            out.text(f"--- {name}" + (" (exists)" if name in in_the_way else ""))
            out.text(text.rstrip("\n"))
        if blocking and not force:
            out.text(f"devenv init would stop: {', '.join(blocking)} exists (--force "
                     "overwrites it)")
            return EXIT_FAILED
        out.text(f"devenv init would write {', '.join(_writes(result, in_the_way, force))}")
        return EXIT_OK
    if blocking and not force:
        raise UsageError(f"{root / blocking[0]} already exists; devenv init never "
                         "overwrites it without --force (devenv init --check shows the "
                         "draft)")
    for name in _writes(result, in_the_way, force):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(result.files[name], encoding="utf-8")
        out.text(f"wrote {name}")
    for path in config_schema.write(root):
        out.text(f"wrote {path.relative_to(root)} (for editors; see the first line of "
                 "steps.yaml)")
    for line in result.summary:
        out.text(f"  {line}")
    for note in result.notes:
        out.warn(f"check {note}")
    out.text(f"{len(result.steps)} steps, {len(result.processes)} processes; next: "
             "devenv plan, then devenv up")
    return EXIT_OK


def _writes(result: draft.Draft, in_the_way: list[str], force: bool) -> list[str]:
    return [n for n in result.files if n not in in_the_way or force]
