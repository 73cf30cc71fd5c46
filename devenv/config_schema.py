"""A JSON Schema for steps.yaml and services/NAME.yaml, built from the loader's own
declarations: the key tuples of :mod:`devenv.loader` and each kind's ``options``.

Nothing here lists a key by hand, so the schema cannot drift from what the loader accepts
(tests/test_config_schema.py checks it key by key against the loader itself). Editors use
it through the YAML language server's modeline::

    # yaml-language-server: $schema=.devenv/schema/steps.json

``devenv schema --write`` (and ``devenv init``) put the files there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from devenv import loader
from devenv.jsonfile import ensure_state_dir
from devenv.kinds import KINDS
from devenv.kinds.faker_data import TABLE_KEYS

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_DIR = ".devenv/schema"
FILES = {"steps": "steps.json", "service": "service.json"}

# Hover text for editors. Only words: every key named here must be one the loader
# accepts (a test checks), so a removed key cannot linger.
DESCRIPTIONS: dict[str, str] = {
    "version": "The format version; 1.",
    "name": "Prefixes containers, volumes, databases and snapshots.",
    "services": "Long-lived dependencies (a PostgreSQL server); also services/NAME.yaml.",
    "database": "The database the steps build and refresh-db replaces.",
    "env": "Variables for every step and process; ${NAME} expands, $${ escapes.",
    "steps": "The step graph: name -> definition.",
    "processes": "Long-running app servers `devenv up` starts after the steps.",
    "profiles": "Extra profile names (local and ci always exist).",
    "cache": "refresh-db snapshots kept (keep: N).",
    "run": "A shell string, or an argv list.",
    "kind": "A typed kind; omitted: a shell command (run:).",
    "cwd": "Folder to run in, relative to steps.yaml (or absolute).",
    "search_path": "The step's PostgreSQL search_path (through PGOPTIONS).",
    "needs": "Services and/or steps that must be done first.",
    "inputs": "Globs (relative to steps.yaml) whose content decides re-runs.",
    "timeout": "Seconds; the step's whole process group is stopped.",
    "checkpoint": "refresh-db keeps a snapshot of everything before this step.",
    "python": "The app's interpreter or virtualenv folder, relative to cwd:.",
    "description": "Free text shown by devenv.",
    "ready": "http(s)://URL, tcp://HOST:PORT, a port number, or cmd: COMMAND.",
    "ready_timeout": "Seconds to wait for the ready check (processes: 60, services: 120).",
    "image": "The container image (e.g. postgres:15).",
    "ports": "Container ports published on 127.0.0.1 (\"15432:5432\" fixes the host port).",
    "healthcheck": "Command run in the container to tell it is up.",
    "volumes": "name: /container/path, kept across restarts.",
    "command": "The container's command.",
    "backend": "auto (docker, else native), docker, native or external.",
    "build": "A folder with a Dockerfile, or {context, dockerfile, args, network}; rebuilt "
             "when the folder's content changes.",
    "url": "A URL template exported as NAME_URL (redis://${host}:${port}/0).",
    "schemas": "Schemas created before the steps run.",
    "service": "The service the database lives on.",
    "keep": "How many refresh-db snapshots to keep.",
    "rerun": "incremental (running it again applies only what is new: a migration tool) "
             "or rebuild (data: up builds beside instead); default from the kind.",
    "reconnects": "The process reconnects by itself after a database swap (not restarted).",
    "up": "What devenv up does on the working database (rebuild: rebuild | stop).",
    "rebuild": "rebuild: a changed data step is built beside and swapped in; stop: up "
               "stops and names devenv refresh-db.",
}

_SCALAR = {"type": ["string", "number"]}
_STR = {"type": ["string", "number"], "minLength": 1}
_STR_LIST = {"type": "array", "items": _STR}
_COMMAND = {"anyOf": [{"type": "string", "minLength": 1},
                      {"type": "array", "items": _STR, "minItems": 1}]}
_ENV = {"type": "object", "propertyNames": {"pattern": loader.ENV_NAME_RE.pattern},
        "additionalProperties": {"type": ["string", "number", "boolean"]}}
_NUMBER = {"type": "number", "exclusiveMinimum": 0}

_OPTION_TYPES: dict[str, dict[str, Any]] = {
    "str": _STR,
    "str_list": _STR_LIST,
    "number": _NUMBER,
    "int": {"type": "integer", "minimum": 0},
    "bool": {"type": "boolean"},
    "mapping": {"type": "object"},
    "any": {},
    "str_or_list": {"anyOf": [_STR, _STR_LIST]},
}


def _described(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    if key in DESCRIPTIONS:
        return {**schema, "description": DESCRIPTIONS[key]}
    return dict(schema)


def _common_step_key(key: str) -> dict[str, Any]:
    shapes: dict[str, dict[str, Any]] = {
        "run": _COMMAND,
        "kind": {"type": "string"},
        "env": _ENV,
        "search_path": {"type": "array", "items": {"type": "string"}},
        "needs": {"type": "array", "items": {"type": "string"}},
        "inputs": _STR_LIST,
        "profiles": _STR_LIST,
        "timeout": _NUMBER,
        "checkpoint": {"type": "boolean"},
        "rerun": {"enum": list(loader.RERUN_VALUES)},
    }
    return _described(key, shapes.get(key, _STR))


def _option_schema(kind: str, key: str, typ: str) -> dict[str, Any]:
    if kind == "faker" and key == "tables":

        table = {"type": "object", "required": list(TABLE_KEYS),
                 "properties": {"rows": {"type": "integer", "minimum": 0},
                                "columns": {"type": "object"}},
                 "additionalProperties": False}
        return {"type": "object", "additionalProperties": table,
                "description": "table (schema.table) -> rows: and columns:"}
    return dict(_OPTION_TYPES[typ])


def step_keys(kind_name: str) -> tuple[str, ...]:
    """The keys a step of ``kind_name`` may have, as the loader decides them."""

    kind = KINDS[kind_name]
    keys = [k for k in loader.STEP_KEYS
            if not (k == "run" and not kind.uses_run)
            and not (k == "python" and not kind.uses_python)]
    return (*keys, *(k.rstrip("!") for k in kind.options))


def _kind_schema(kind_name: str) -> dict[str, Any]:

    kind = KINDS[kind_name]
    props: dict[str, Any] = {}
    for key in step_keys(kind_name):
        props[key] = _common_step_key(key)
    for okey, typ in kind.options.items():
        bare = okey.rstrip("!")
        props[bare] = _option_schema(kind_name, bare, typ.rstrip("!"))
    props["kind"] = {"const": kind_name, "description": DESCRIPTIONS["kind"]}
    required = [k.rstrip("!") for k in kind.options if k.endswith("!")]
    if kind.uses_run:
        required.insert(0, "run")
    out: dict[str, Any] = {"type": "object", "properties": props,
                           "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def _service_schema() -> dict[str, Any]:
    shapes: dict[str, dict[str, Any]] = {
        "image": _STR,
        "env": _ENV,
        "ports": {"type": "array", "items": {"anyOf": [
            {"type": "string", "pattern": r"^(\d{1,5}:)?\d{1,5}$"},
            {"type": "integer", "minimum": 1, "maximum": 65535}]}},
        "healthcheck": _COMMAND,
        "volumes": {"type": "object", "propertyNames": {"pattern": loader.NAME_RE.pattern},
                    "additionalProperties": {"type": "string", "pattern": "^/"}},
        "command": _COMMAND,
        "backend": {"enum": list(loader.BACKENDS)},
        "build": {"anyOf": [_STR, {
            "type": "object", "required": ["context"], "additionalProperties": False,
            "properties": {"context": _STR, "dockerfile": _STR, "args": _ENV,
                           "network": _STR}}]},
        "url": _STR,
        "needs": _STR_LIST,
        "ready_timeout": _NUMBER,
        "ready": {"anyOf": [{"enum": ["tcp", "http"]}, {
            "type": "object", "additionalProperties": False,
            "properties": {"tcp": {"type": ["integer", "string", "null"]},
                           "http": {"type": "string", "pattern": "^/"},
                           "cmd": _COMMAND,
                           "port": {"type": ["integer", "string"]},
                           "status": {"anyOf": [{"type": "integer"},
                                                {"type": "array",
                                                 "items": {"type": "integer"}}]}}}]},
    }
    return {
        "type": "object",
        "properties": {k: _described(k, shapes.get(k, _STR)) for k in loader.SERVICE_KEYS},
        "additionalProperties": False,
        # image: may be left out only where no container is made, or one is built.
        "if": {"required": ["backend"],
               "properties": {"backend": {"enum": ["native", "external"]}}},
        "else": {"if": {"required": ["build"]}, "else": {"required": ["image"]}},
    }


def steps_schema() -> dict[str, Any]:
    """The schema of steps.yaml."""

    kinds = list(KINDS)
    defs: dict[str, Any] = {f"step-{k}": _kind_schema(k) for k in kinds}
    defs["service"] = _service_schema()
    name_map = {"type": "object", "propertyNames": {"pattern": loader.NAME_RE.pattern}}
    step_choice: list[dict[str, Any]] = [
        {"if": {"not": {"required": ["kind"]}}, "then": {"$ref": "#/$defs/step-shell"}}]
    step_choice += [{"if": {"required": ["kind"], "properties": {"kind": {"const": k}}},
                     "then": {"$ref": f"#/$defs/step-{k}"}} for k in kinds]
    defs["step"] = {"type": "object",
                    "properties": {"kind": {"enum": kinds, "description": DESCRIPTIONS["kind"]}},
                    "allOf": step_choice}
    process_shapes: dict[str, dict[str, Any]] = {
        "run": _COMMAND, "env": _ENV, "needs": {"type": "array", "items": {"type": "string"}},
        # A string as the loader reads it today; a mapping is let through for the
        # richer forms a check may take (the loader judges those).
        "ready": {"anyOf": [{"type": "string",
                             "pattern": r"^(https?://|tcp://|\d{1,5}$|cmd:)"},
                            {"type": "integer"}, {"type": "object"}]},
        "ready_timeout": _NUMBER, "profiles": _STR_LIST,
        "search_path": {"type": "array", "items": {"type": "string"}},
        "reconnects": {"type": "boolean"},
    }
    defs["process"] = {
        "type": "object", "required": ["run"], "additionalProperties": False,
        "properties": {k: _described(k, process_shapes.get(k, _STR))
                       for k in loader.PROCESS_KEYS}}
    db_shapes: dict[str, dict[str, Any]] = {
        "name": {"type": "string", "pattern": loader.IDENT_RE.pattern},
        "schemas": {"type": "array",
                    "items": {"type": "string", "pattern": loader.IDENT_RE.pattern}},
    }
    top_shapes: dict[str, dict[str, Any]] = {
        "version": {"const": loader.SUPPORTED_VERSION},
        "name": {"type": "string", "pattern": loader.PROJECT_RE.pattern},
        "services": {**name_map, "additionalProperties": {"$ref": "#/$defs/service"},
                     # services: {from: compose.yaml} (devenv.compose)
                     "properties": {loader.SERVICES_FROM: {"anyOf": [
                         {"type": "string", "minLength": 1},
                         {"$ref": "#/$defs/service"}]}}},
        "database": {"type": "object", "required": ["service", "name"],
                     "additionalProperties": False,
                     "properties": {k: _described(k, db_shapes.get(k, _STR))
                                    for k in loader.DATABASE_KEYS}},
        "env": _ENV,
        "steps": {**name_map, "additionalProperties": {"$ref": "#/$defs/step"}},
        "processes": {**name_map, "additionalProperties": {"$ref": "#/$defs/process"}},
        "profiles": _STR_LIST,
        "cache": {"type": "object", "additionalProperties": False,
                  "properties": {k: _described(k, {"type": "integer", "minimum": 0})
                                 for k in loader.CACHE_KEYS}},
        "up": {"type": "object", "additionalProperties": False,
               "properties": {k: _described(k, {"enum": list(loader.UP_REBUILD_VALUES)})
                              for k in loader.UP_KEYS}},
    }
    return {
        "$schema": DIALECT,
        "$id": "https://devenv.invalid/schema/steps.json",
        "title": "devenv steps.yaml",
        "type": "object",
        "required": ["steps"],
        "additionalProperties": False,
        "properties": {k: _described(k, top_shapes[k]) for k in loader.TOP_KEYS},
        "$defs": defs,
    }


def service_schema() -> dict[str, Any]:
    """The schema of one services/NAME.yaml file."""
    return {"$schema": DIALECT, "$id": "https://devenv.invalid/schema/service.json",
            "title": "devenv services/NAME.yaml", **_service_schema()}


def render(which: str) -> str:
    """``steps`` or ``service`` as JSON text."""
    schema = steps_schema() if which == "steps" else service_schema()
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def write(root: Path) -> list[Path]:
    """Write both schemas under ``root/.devenv/schema``; the paths written."""

    # .devenv/ as devenv makes it everywhere: 0700, with its own .gitignore.
    ensure_state_dir(root / ".devenv")
    folder = root / SCHEMA_DIR
    folder.mkdir(exist_ok=True)
    out = []
    for which, name in FILES.items():
        path = folder / name
        path.write_text(render(which), encoding="utf-8")
        out.append(path)
    return out
