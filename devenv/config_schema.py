"""A JSON Schema for steps.yaml and services/NAME.yaml, built from the field tables of
:mod:`devenv.fields` (each key's type, whether it is required, its description) and each
kind's ``options``.

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

from devenv import fields, loader
from devenv.jsonfile import ensure_state_dir
from devenv.kinds import KINDS

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_DIR = ".devenv/schema"
FILES = {"steps": "steps.json", "service": "service.json"}

_SCALAR = {"type": ["string", "number"]}
_STR = {"type": ["string", "number"], "minLength": 1}
_STR_LIST = {"type": "array", "items": _STR}
_COMMAND = {"anyOf": [{"type": "string", "minLength": 1},
                      {"type": "array", "items": _STR, "minItems": 1}]}
_ENV = {"type": "object", "propertyNames": {"pattern": loader.ENV_NAME_RE.pattern},
        "additionalProperties": {"type": ["string", "number", "boolean"]}}
_NUMBER = {"type": "number", "exclusiveMinimum": 0}
_NAME_MAP = {"type": "object", "propertyNames": {"pattern": loader.NAME_RE.pattern}}

# The JSON Schema of each type a field may have (devenv.fields); the sections (STEPS,
# SERVICES, ...) are built from their own tables below.
_SHAPES: dict[Any, dict[str, Any]] = {
    str: _STR,
    tuple[str, ...]: _STR_LIST,
    float: _NUMBER,
    int: {"type": "integer", "minimum": 0},
    bool: {"type": "boolean"},
    dict: {"type": "object"},
    object: {},
    fields.COMMAND: _COMMAND,
    fields.ENV: _ENV,
    fields.SEARCH_PATH: {"type": "array", "items": {"type": "string"}},
    fields.PROFILES: _STR_LIST,
    # A string as the loader reads it; a mapping is let through for the richer forms a
    # check may take (the loader judges those).
    fields.PROCESS_READY: {"anyOf": [{"type": "string",
                                      "pattern": r"^(https?://|tcp://|\d{1,5}$|cmd:)"},
                                     {"type": "integer"}, {"type": "object"}]},
    fields.PORTS: {"type": "array", "items": {"anyOf": [
        {"type": "string", "pattern": r"^(\d{1,5}:)?\d{1,5}$"},
        {"type": "integer", "minimum": 1, "maximum": 65535}]}},
    fields.VOLUMES: {"type": "object", "propertyNames": {"pattern": loader.NAME_RE.pattern},
                     "additionalProperties": {"type": "string", "pattern": "^/"}},
    fields.BUILD: {"anyOf": [_STR, {
        "type": "object", "required": ["context"], "additionalProperties": False,
        "properties": {"context": _STR, "dockerfile": _STR, "args": _ENV,
                       "network": _STR}}]},
    fields.SERVICE_READY: {"anyOf": [{"enum": ["tcp", "http"]}, {
        "type": "object", "additionalProperties": False,
        "properties": {"tcp": {"type": ["integer", "string", "null"]},
                       "http": {"type": "string", "pattern": "^/"},
                       "cmd": _COMMAND,
                       "port": {"type": ["integer", "string"]},
                       "status": {"anyOf": [{"type": "integer"},
                                            {"type": "array",
                                             "items": {"type": "integer"}}]}}}]},
    fields.PROJECT_NAME: {"type": "string", "pattern": loader.PROJECT_RE.pattern},
    fields.DATABASE_NAME: {"type": "string", "pattern": loader.IDENT_RE.pattern},
    fields.SCHEMA_NAMES: {"type": "array",
                          "items": {"type": "string", "pattern": loader.IDENT_RE.pattern}},
    fields.SERVICES: {**_NAME_MAP, "additionalProperties": {"$ref": "#/$defs/service"},
                      # services: {from: compose.yaml} (devenv.compose)
                      "properties": {loader.SERVICES_FROM: {"anyOf": [
                          {"type": "string", "minLength": 1},
                          {"$ref": "#/$defs/service"}]}}},
    fields.STEPS: {**_NAME_MAP, "additionalProperties": {"$ref": "#/$defs/step"}},
    fields.PROCESSES: {**_NAME_MAP, "additionalProperties": {"$ref": "#/$defs/process"}},
}

def _field_schema(field: fields.Field) -> dict[str, Any]:
    """The JSON Schema of one key's value, with its description."""
    words = fields.choices(field.type)
    if field.schema is not None:
        out = dict(field.schema)
    elif len(words) == 1:
        out = {"const": words[0]}
    elif words:
        out = {"enum": list(words)}
    elif field.type in _SECTION_TABLES:
        out = _object(_SECTION_TABLES[field.type])
    else:
        out = dict(_SHAPES[field.type])
    if field.description:
        out["description"] = field.description
    return out


def _object(table: tuple[fields.Field, ...]) -> dict[str, Any]:
    """A mapping of exactly the keys of ``table``."""
    out: dict[str, Any] = {"type": "object"}
    required = [f.name for f in table if f.required]
    if required:
        out["required"] = required
    out["additionalProperties"] = False
    out["properties"] = {f.name: _field_schema(f) for f in table}
    return out


# top-level keys whose value is a mapping of a table's keys
_SECTION_TABLES: dict[Any, tuple[fields.Field, ...]] = {
    fields.DATABASE: fields.DATABASE_FIELDS, fields.CACHE: fields.CACHE_FIELDS,
    fields.UP: fields.UP_FIELDS,
}


def step_keys(kind_name: str) -> tuple[str, ...]:
    """The keys a step of ``kind_name`` may have, as the loader decides them."""
    kind = KINDS[kind_name]
    keys = [k for k in loader.STEP_KEYS
            if not (k == "run" and not kind.uses_run)
            and not (k == "python" and not kind.uses_python)]
    return (*keys, *fields.names(kind.options))


def _kind_schema(kind_name: str) -> dict[str, Any]:
    kind = KINDS[kind_name]
    allowed = step_keys(kind_name)
    props: dict[str, Any] = {f.name: _field_schema(f) for f in fields.STEP_FIELDS
                             if f.name in allowed and f.name != "kind"}
    props.update({o.name: _field_schema(o) for o in kind.options})
    props["kind"] = {"const": kind_name,
                     "description": fields.find(fields.STEP_FIELDS, "kind").description}
    required = [o.name for o in kind.options if o.required]
    if kind.uses_run:
        required.insert(0, "run")
    out: dict[str, Any] = {"type": "object", "properties": props,
                           "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def _service_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {f.name: _field_schema(f) for f in fields.SERVICE_FIELDS},
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
    step_choice: list[dict[str, Any]] = [
        {"if": {"not": {"required": ["kind"]}}, "then": {"$ref": "#/$defs/step-shell"}}]
    step_choice += [{"if": {"required": ["kind"], "properties": {"kind": {"const": k}}},
                     "then": {"$ref": f"#/$defs/step-{k}"}} for k in kinds]
    kind_words = fields.find(fields.STEP_FIELDS, "kind").description
    defs["step"] = {"type": "object",
                    "properties": {"kind": {"enum": kinds, "description": kind_words}},
                    "allOf": step_choice}
    defs["process"] = _object(fields.PROCESS_FIELDS)
    top = _object(fields.TOP_FIELDS)
    return {
        "$schema": DIALECT,
        "$id": "https://devenv.invalid/schema/steps.json",
        "title": "devenv steps.yaml",
        "type": "object",
        "required": top["required"],
        "additionalProperties": False,
        "properties": top["properties"],
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
