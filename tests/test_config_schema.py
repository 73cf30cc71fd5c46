"""The JSON Schema of steps.yaml / services/NAME.yaml is in step with the loader: the
loader and the schema accept exactly the same keys, checked by asking the loader itself."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from devenv import config_schema, loader
from devenv.errors import ConfigError
from devenv.kinds import KINDS

ROOT = Path(__file__).resolve().parents[1]

# The smallest step the loader accepts, per kind. A new kind must be added here.
MINIMAL: dict[str, dict[str, Any]] = {
    "shell": {"run": "true"},
    "django-migrate": {"kind": "django-migrate"},
    "django-loaddata": {"kind": "django-loaddata", "fixtures": ["users"]},
    "django-command": {"kind": "django-command", "command": "seed"},
    "alembic": {"kind": "alembic"},
    "flask-command": {"kind": "flask-command", "flask_app": "app.py", "command": "seed"},
    "sql": {"kind": "sql", "file": "a.sql"},
    "faker": {"kind": "faker", "tables": {"t": {"rows": 1, "columns": {"n": "name"}}}},
    "python": {"kind": "python", "call": "seeds.people:fill"},
}
# A value the loader takes, per option type (devenv.fields)
SAMPLE: dict[Any, Any] = {str: "x.ini", tuple[str, ...]: ["a"], float: 5, int: 1, bool: True,
                          dict: {}, object: "x"}


@functools.cache
def validator(which: str = "steps") -> jsonschema.Draft202012Validator:
    """Built once: checking the schema against the meta-schema takes a second."""
    schema = config_schema.steps_schema() if which == "steps" else \
        config_schema.service_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def loader_refuses_key(doc: dict[str, Any], key: str) -> bool:
    """Whether the loader refuses ``key`` as a key (not for its value)."""
    try:
        loader.load_text(yaml.safe_dump(doc), ROOT)
    except ConfigError as exc:
        return (exc.message.startswith(f"unknown key '{key}'")
                or f"'{key}' is not used by kind" in exc.message
                or (key == "python" and "python:" in exc.message and exc.path.endswith(
                    ".python") and "is not an interpreter" not in exc.message))
    return False


def all_option_keys() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in KINDS.values():
        for option in kind.options:
            out.setdefault(option.name, option.type)
    return out


def test_every_kind_has_a_minimal_step() -> None:
    assert set(MINIMAL) == set(KINDS), "add the new kind's smallest step to MINIMAL"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_step_keys_match_the_loader(kind: str) -> None:
    """For every key any kind knows (and a made-up one): the loader accepts it on this
    kind exactly when the schema lists it."""
    schema_keys = set(validator().schema["$defs"][f"step-{kind}"]["properties"])
    candidates = {**{k: SAMPLE[str] for k in loader.STEP_KEYS}, **{
        k: SAMPLE[t] for k, t in all_option_keys().items()}, "not_a_key": "x"}
    candidates.update({"needs": [], "inputs": ["a"], "search_path": ["public"],
                       "profiles": ["local"], "timeout": 5, "checkpoint": True, "env": {},
                       "run": "true"})
    for key, value in candidates.items():
        if key == "kind":
            continue
        step = {**MINIMAL[kind], key: value}
        refused = loader_refuses_key({"version": 1, "steps": {"s": step}}, key)
        assert refused == (key not in schema_keys), (kind, key)
        if key not in schema_keys:
            assert list(validator().iter_errors({"steps": {"s": step}})), (kind, key)


@pytest.mark.parametrize(("section", "keys", "wrap"), [
    ("top", loader.TOP_KEYS, lambda k: {"steps": {"s": {"run": "true"}}, k: None}),
    ("process", loader.PROCESS_KEYS,
     lambda k: {"steps": {"s": {"run": "true"}}, "processes": {"p": {"run": "x", k: None}}}),
    ("cache", loader.CACHE_KEYS,
     lambda k: {"steps": {"s": {"run": "true"}}, "cache": {k: 1}}),
])
def test_other_sections_match_the_loader(section: str, keys: tuple[str, ...],
                                         wrap: Any) -> None:
    schema = config_schema.steps_schema()
    listed = {"top": schema["properties"],
              "process": schema["$defs"]["process"]["properties"],
              "cache": schema["properties"]["cache"]["properties"]}[section]
    assert set(listed) == set(keys)
    for key in [*keys, "not_a_key"]:
        assert loader_refuses_key(wrap(key), key) == (key not in listed), key


def test_service_and_database_keys_match_the_loader() -> None:
    service = config_schema.service_schema()["properties"]
    db = config_schema.steps_schema()["properties"]["database"]["properties"]
    assert set(service) == set(loader.SERVICE_KEYS)
    assert set(db) == set(loader.DATABASE_KEYS)
    for key in [*loader.SERVICE_KEYS, "not_a_key"]:
        doc = {"steps": {"s": {"run": "true"}}, "services": {"db": {"image": "x", key: None}}}
        assert loader_refuses_key(doc, key) == (key not in service), key
    for key in [*loader.DATABASE_KEYS, "not_a_key"]:
        doc = {"steps": {"s": {"run": "true"}}, "services": {"db": {"image": "x"}},
               "database": {"service": "db", "name": "d", key: None}}
        assert loader_refuses_key(doc, key) == (key not in db), key


def test_this_repositorys_files_are_valid() -> None:
    steps = yaml.safe_load((ROOT / "steps.yaml").read_text())
    assert list(validator().iter_errors(steps)) == []
    service = yaml.safe_load((ROOT / "services" / "postgres.yaml").read_text())
    assert list(validator("service").iter_errors(service)) == []


def test_wrong_keys_fail_validation() -> None:
    steps = yaml.safe_load((ROOT / "steps.yaml").read_text())
    steps["steps"]["billing"]["cwdd"] = "x"  # a typo
    steps["steps"]["flask-migrate"]["settings"] = "x"  # another kind's option
    del steps["steps"]["flask-fixtures"]["command"]  # a required option
    errors = sorted(e.message for e in validator().iter_errors(steps))
    assert errors == ["'command' is a required property",
                      "Additional properties are not allowed ('cwdd' was unexpected)",
                      "Additional properties are not allowed ('settings' was unexpected)"]
    service = yaml.safe_load((ROOT / "services" / "postgres.yaml").read_text())
    service["imagee"] = service.pop("image")
    assert sorted(e.message for e in validator("service").iter_errors(service)) == [
        "'image' is a required property",
        "Additional properties are not allowed ('imagee' was unexpected)"]
