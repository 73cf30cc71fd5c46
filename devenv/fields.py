"""Every key of steps.yaml and services/NAME.yaml, declared once.

Each section of the file (the top level, a step, a process, a service, the database, the
cache, up) is a tuple of :class:`Field`: its name, the type of its value, its default,
whether it is part of a step's fingerprint, and the words editors and the README show.
From these tables:

- the loader checks keys (an unknown one is refused with the names in table order) and
  reads steps and processes field by field (:mod:`devenv.loader`);
- :meth:`devenv.schema.StepSpec.definition` (what a fingerprint hashes) takes exactly the
  fingerprinted step fields;
- :mod:`devenv.config_schema` builds the JSON Schema (properties, required keys,
  descriptions);
- the README's key tables are :func:`markdown_table` of them (a test compares).

A step kind's own options (``settings:`` of django-migrate, ...) are Fields too, listed in
the kind's ``options``; ``required`` marks the ones it cannot do without.

A type is a python type where that says it all: ``str``, ``bool``, ``int`` (a whole
number, 0 or more), ``float`` (a number greater than 0), ``tuple[str, ...]`` (a list of
strings), ``dict`` (a mapping), ``object`` (any value) and ``Literal[...]`` (one of some
words). A value with rules of its own (a command, an environment mapping, schema names...)
has a :class:`Shape`, named below. The loader has a reader for each type a step, a process
or a kind option may have; the shapes only services and the top level have are read by
hand there.

Adding a step key: its Field here, the field of the same name on
:class:`devenv.schema.StepSpec`, and the code that uses it; tests/test_fields.py checks
that nothing else is needed and names the README table to paste. A kind option: its Field
in the kind's ``options``, and its use.

This module imports nothing of devenv: :mod:`devenv.schema` builds on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin


@dataclass(frozen=True)
class Shape:
    """A value with rules beyond a python type; ``doc`` is how the docs name it."""

    name: str
    doc: str


COMMAND = Shape("command", "shell string or argv list")
ENV = Shape("env", "mapping NAME: value")
SEARCH_PATH = Shape("search_path", "list of schema names")
PROFILES = Shape("profiles", "list of profile names")
KIND = Shape("kind", "kind name")
PROCESS_READY = Shape("process ready", "string or {http, status}")
BUILD = Shape("build", "folder or mapping")
# only the services and the top level have these; the loader reads them by hand
PORTS = Shape("ports", "list of ports")
VOLUMES = Shape("volumes", "mapping name: /container/path")
SERVICE_READY = Shape("service ready", "tcp, http or mapping")
PROJECT_NAME = Shape("project name", "lowercase name")
DATABASE_NAME = Shape("database name", "SQL name")
SCHEMA_NAMES = Shape("schema names", "list of SQL names")
SERVICES = Shape("services", "mapping name: service")
DATABASE = Shape("database", "mapping")
STEPS = Shape("steps", "mapping name: step")
PROCESSES = Shape("processes", "mapping name: process")
CACHE = Shape("cache", "mapping")
UP = Shape("up", "mapping")


@dataclass(frozen=True)
class Field:
    """One key: its value's type (a python type or a :class:`Shape`), its default, and
    whether a step's fingerprint hashes it (``unordered``: as a set, sorted)."""

    name: str
    type: Any
    default: Any = None
    description: str = ""
    required: bool = False
    fingerprint: bool = False
    unordered: bool = False
    #: hashed only when set to something other than its default: a fingerprinted key added
    #: later must set this, or every step of every project would rebuild after an upgrade
    #: (the keys hashed since the start are hashed always; tests pin those fingerprints)
    omit_default: bool = False
    #: the JSON Schema of the value, where the type says too little (a kind's nested spec)
    schema: Mapping[str, Any] | None = None


def names(fields: Iterable[Field]) -> tuple[str, ...]:
    return tuple(f.name for f in fields)


def find(fields: Iterable[Field], name: str) -> Field:
    """The field called ``name`` (a KeyError names it when there is none)."""
    for f in fields:
        if f.name == name:
            return f
    raise KeyError(name)


def choices(typ: Any) -> tuple[Any, ...]:
    """The words of a ``Literal[...]`` type; () for any other type."""
    return get_args(typ) if get_origin(typ) is Literal else ()


def type_name(typ: Any) -> str:
    """How the docs name a field's type."""
    if isinstance(typ, Shape):
        return typ.doc
    quoted = [f"`{c}`" for c in choices(typ)]
    if quoted:
        return f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
    return _TYPE_NAMES[typ]


_TYPE_NAMES: dict[Any, str] = {str: "string", bool: "true or false", int: "whole number",
                               float: "number > 0", tuple[str, ...]: "list of strings",
                               dict: "mapping", object: "any"}


# --------------------------------------------------------------------------- steps

STEP_FIELDS: tuple[Field, ...] = (
    Field("run", COMMAND, None, "The command (a shell string runs in /bin/sh); required "
                                "unless a kind: does the work.", fingerprint=True),
    Field("kind", KIND, "shell", "A typed kind; omitted: a shell command (run:).",
          fingerprint=True),
    Field("cwd", str, None, "Folder to run in, relative to steps.yaml (or absolute).",
          fingerprint=True),
    Field("env", ENV, {}, "Variables for this step (over the top-level env:); ${NAME} "
                          "expands, $${ escapes.", fingerprint=True),
    Field("search_path", SEARCH_PATH, (), "The step's PostgreSQL search_path (through "
                                          "PGOPTIONS).", fingerprint=True),
    Field("needs", tuple[str, ...], (), "Services and/or steps that must be done first.",
          fingerprint=True, unordered=True),
    Field("inputs", tuple[str, ...], (), "Globs (relative to steps.yaml) whose content "
                                         "decides re-runs.", fingerprint=True),
    Field("profiles", PROFILES, (), "The profiles the step runs in; omitted: every profile."),
    Field("timeout", float, None, "Seconds; the step's whole process group is stopped."),
    Field("checkpoint", bool, False, "refresh-db keeps a snapshot of everything before "
                                     "this step."),
    Field("python", str, None, "The app's interpreter or virtualenv folder, relative to "
                               "cwd:.", fingerprint=True),
    Field("description", str, None, "Free text shown by devenv."),
    Field("rerun", Literal["incremental", "rebuild"], None,
          "incremental (running it again applies only what is new: a migration tool) or "
          "rebuild (data: up builds beside instead); default from the kind."),
    Field("outside_database", bool, False,
          "true: the step writes to another service (a queue, a provider's stand-in), not "
          "the database: no snapshot holds its work, so it runs again after a restore, "
          "and up runs it on top rather than rebuilding the database for it."),
)
"""A step's keys, in the order an unknown key's hint lists them. Fingerprinted: what
the step does to the database; not: when and how it may run (profiles, timeout,
checkpoint, description, rerun, outside_database)."""

#: what a step definition holds besides its fields: the kind's options, all fingerprinted
STEP_OPTIONS = "options"

# --------------------------------------------------------------------------- processes

PROCESS_FIELDS: tuple[Field, ...] = (
    Field("run", COMMAND, None, "The command that starts the process.", required=True),
    Field("cwd", str, None, "Folder to run in, relative to steps.yaml (or absolute)."),
    Field("env", ENV, {}, "Variables for the process; ${NAME} expands, $${ escapes."),
    Field("needs", tuple[str, ...], (), "Steps, services or other processes started first."),
    Field("ready", PROCESS_READY, None, "http(s)://URL, tcp://HOST:PORT, a port number, or "
                                        "cmd: COMMAND."),
    Field("ready_timeout", float, 60.0, "Seconds to wait for the ready check."),
    Field("profiles", PROFILES, (), "The profiles it runs in; omitted: every profile."),
    Field("search_path", SEARCH_PATH, (), "Its PostgreSQL search_path (through PGOPTIONS)."),
    Field("reconnects", bool, False, "The process reconnects by itself after a database "
                                     "swap (not restarted)."),
    Field("image", str, None, "Run it in a container of this image (the repository "
                              "mounted, the host's network)."),
    Field("build", BUILD, None, "Run it in a container of an image built from the "
                                "repository, as a service's build: (not with image:)."),
)

# --------------------------------------------------------------------------- services

SERVICE_FIELDS: tuple[Field, ...] = (
    Field("image", str, None, "The container image (e.g. postgres:15)."),
    Field("env", ENV, {}, "The container's environment."),
    Field("ports", PORTS, (), "Container ports published on 127.0.0.1 (\"15432:5432\" "
                              "fixes the host port)."),
    Field("healthcheck", COMMAND, None, "Command run in the container to tell it is up."),
    Field("volumes", VOLUMES, {}, "name: /container/path, kept across restarts."),
    Field("command", COMMAND, None, "The container's command."),
    Field("backend", Literal["auto", "docker", "native", "external"], "auto",
          "auto (docker, else native), docker, native or external."),
    Field("build", BUILD, None, "A folder with a Dockerfile, or {context, dockerfile, args, "
                                "network}; rebuilt when the folder's content changes."),
    Field("url", str, None, "A URL template exported as NAME_URL (redis://${host}:${port}/0)."),
    Field("needs", tuple[str, ...], (), "Services that must be ready before this one starts."),
    Field("ready", SERVICE_READY, None, "When it counts as ready: tcp, http, {http: /path, "
                                        "status: [200]}, {cmd: COMMAND}."),
    Field("ready_timeout", float, None, "Seconds to wait for the service to be ready "
                                        "(default 120)."),
)

DATABASE_FIELDS: tuple[Field, ...] = (
    Field("service", str, None, "The service the database lives on.", required=True),
    Field("name", DATABASE_NAME, None, "The database's name.", required=True),
    Field("schemas", SCHEMA_NAMES, ("public",), "Schemas created before the steps run."),
    Field("user", str, None, "The user devenv connects as (default: the service's "
                             "POSTGRES_USER, else postgres)."),
    Field("password", str, None, "Its password (default: the service's POSTGRES_PASSWORD)."),
)

CACHE_FIELDS: tuple[Field, ...] = (
    Field("keep", int, 5, "How many refresh-db snapshots to keep."),
    Field("remote", str, None, "A shared snapshot cache: oci://REGISTRY/REPOSITORY."),
    Field("sign_key", str, None, "The key that signs pushed snapshots (a file)."),
    Field("trust", tuple[str, ...], (), "Keys whose signed snapshots are pulled (files)."),
)

UP_FIELDS: tuple[Field, ...] = (
    Field("rebuild", Literal["rebuild", "stop"], "rebuild",
          "rebuild: a changed data step is built beside and swapped in; stop: up stops and "
          "names devenv refresh-db."),
)

TOP_FIELDS: tuple[Field, ...] = (
    Field("version", Literal[1], 1, "The format version; 1."),
    Field("name", PROJECT_NAME, None, "Prefixes containers, volumes, databases and "
                                      "snapshots."),
    Field("services", SERVICES, {}, "Long-lived dependencies (a PostgreSQL server); also "
                                    "services/NAME.yaml."),
    Field("database", DATABASE, None, "The database the steps build and refresh-db replaces."),
    Field("env", ENV, {}, "Variables for every step and process; ${NAME} expands, $${ "
                          "escapes."),
    Field("steps", STEPS, None, "The step graph: name -> definition.", required=True),
    Field("processes", PROCESSES, {}, "Long-running app servers `devenv up` starts after "
                                      "the steps."),
    Field("profiles", tuple[str, ...], (), "Extra profile names (local and ci always exist)."),
    Field("cache", CACHE, {}, "refresh-db snapshots kept (keep: N) and the shared cache."),
    Field("up", UP, {}, "What devenv up does on the working database (rebuild: rebuild | "
                        "stop)."),
)

SECTIONS: Mapping[str, tuple[Field, ...]] = {
    "top": TOP_FIELDS, "step": STEP_FIELDS, "process": PROCESS_FIELDS,
    "service": SERVICE_FIELDS, "database": DATABASE_FIELDS, "cache": CACHE_FIELDS,
    "up": UP_FIELDS,
}


def fingerprinted(fields: Iterable[Field]) -> tuple[Field, ...]:
    return tuple(f for f in fields if f.fingerprint)


# --------------------------------------------------------------------------- docs


def _default_text(field: Field) -> str:
    if field.required:
        return "required"
    value = field.default
    if value is None or value == () or value == {}:
        return ""
    if isinstance(value, tuple):
        return f"`[{', '.join(map(str, value))}]`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def markdown_table(fields: Iterable[Field], fingerprint_column: bool = False,
                   kinds: Mapping[str, Iterable[Field]] | None = None) -> str:
    """The README's table of ``fields`` (between its ``<!-- fields:NAME -->`` markers),
    or of each kind's options when ``kinds`` (kind name -> options) is given."""
    rows_of: list[tuple[str, Field]] = [("", f) for f in fields] if kinds is None else \
        [(f"`{k}`", f) for k, options in kinds.items() for f in options]
    head = (["kind"] if kinds is not None else []) + ["key", "type", "default"] \
        + (["fingerprinted"] if fingerprint_column else []) + ["what it does"]
    rows = [head, ["---"] * len(head)]
    for kind, f in rows_of:
        row = ([kind] if kinds is not None else []) + [f"`{f.name}`", type_name(f.type),
                                                       _default_text(f)]
        if fingerprint_column:
            row.append("yes" if f.fingerprint else "no")
        rows.append([*row, f.description])
    # a "|" inside a cell would end it
    return "".join("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |\n"
                   for r in rows)
