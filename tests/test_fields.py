"""One declaration per steps.yaml key (devenv.fields), and everything that follows from it:
the records, the loader's keys and defaults, the fingerprinted definition, the JSON Schema
and the README's tables. Adding a key means adding its Field and using its value."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from devenv import config_schema, fields, fingerprint, loader
from devenv import schema as records
from devenv.errors import ConfigError
from devenv.fields import Field
from devenv.kinds import KINDS, StepContext
from devenv.schema import Command, ProcessSpec, Project, StepSpec
from tests.test_config_schema import MINIMAL

ROOT = Path(__file__).resolve().parents[1]

# What a record holds besides its keys: where it came from, and what the loader derives.
STEP_EXTRA = {"name", "options", "loc", "key_lines"}
PROCESS_EXTRA = {"name", "loc", "ready_status"}  # ready_status: ready: {http, status}


def load(root: Path, doc: Mapping[str, Any]) -> Project:
    (root / "steps.yaml").write_text(yaml.safe_dump({"version": 1, **doc}))
    return loader.load(root / "steps.yaml")


def refusal(root: Path, doc: Mapping[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load(root, doc)
    return str(info.value)


def test_every_record_field_is_a_declared_key_and_back() -> None:
    step = {f.name for f in dataclasses.fields(StepSpec)} - STEP_EXTRA
    assert step == set(fields.names(fields.STEP_FIELDS))
    process = {f.name for f in dataclasses.fields(ProcessSpec)} - PROCESS_EXTRA
    assert process == set(fields.names(fields.PROCESS_FIELDS))


def test_the_allowed_values_stay_as_documented() -> None:
    # the key lists are the tables' names by construction; test_config_schema checks them
    # against what the loader refuses
    assert loader.RERUN_VALUES == ("incremental", "rebuild")
    assert loader.BACKENDS == ("auto", "docker", "native", "external")


def test_names_are_unique_in_each_table_and_kind() -> None:
    tables = [*fields.SECTIONS.values(), *(k.options for k in KINDS.values())]
    for table in tables:
        assert len(set(fields.names(table))) == len(table)
    for kind in KINDS.values():
        # an option named like a step key would be read twice
        assert not set(fields.names(kind.options)) & set(loader.STEP_KEYS), kind.name


def test_every_type_has_a_reader_and_a_json_schema() -> None:
    read = [*fields.STEP_FIELDS, *fields.PROCESS_FIELDS,
            *(o for k in KINDS.values() for o in k.options)]
    by_hand = (fields.PROFILES, fields.PROCESS_READY)  # they need more than the node
    for f in read:
        assert f.type in loader._READERS or f.type in by_hand or fields.choices(f.type), f
    for table in [*fields.SECTIONS.values(), *(k.options for k in KINDS.values())]:
        for f in table:
            assert fields.type_name(f.type), f


def test_the_defaults_are_what_the_loader_gives(tmp_path: Path) -> None:
    project = load(tmp_path, {"steps": {"s": {"run": "true"}},
                              "processes": {"p": {"run": "serve"}}})
    step = project.steps["s"]
    for f in fields.STEP_FIELDS:
        if f.name != "run":
            assert getattr(step, f.name) == f.default, f.name
    process = project.processes["p"]
    for f in fields.PROCESS_FIELDS:
        if f.name != "run":
            assert getattr(process, f.name) == f.default, f.name
    assert process.ready_status == ()
    assert step.env is not fields.find(fields.STEP_FIELDS, "env").default


def test_the_records_defaults_agree_with_the_tables() -> None:
    # StepSpec and ProcessSpec keep defaults of their own (for records built in code): the
    # two declarations must say the same
    for record, table in ((StepSpec, fields.STEP_FIELDS), (ProcessSpec, fields.PROCESS_FIELDS)):
        for f in dataclasses.fields(record):
            if f.name not in fields.names(table):
                continue
            if f.default is not dataclasses.MISSING:
                own = f.default
            elif f.default_factory is not dataclasses.MISSING:
                own = f.default_factory()
            else:
                continue
            assert own == fields.find(table, f.name).default, (record.__name__, f.name)


def test_the_other_sections_defaults_are_what_the_loader_gives(tmp_path: Path) -> None:
    project = load(tmp_path, {"steps": {"s": {"run": "true"}},
                              "services": {"db": {"image": "postgres:15"}},
                              "database": {"service": "db", "name": "d"}})
    assert project.cache_keep == fields.find(fields.CACHE_FIELDS, "keep").default == 5
    assert project.up_rebuild == fields.find(fields.UP_FIELDS, "rebuild").default
    assert project.services["db"].backend == fields.find(fields.SERVICE_FIELDS,
                                                         "backend").default
    assert project.database is not None
    assert project.database.schemas == fields.find(fields.DATABASE_FIELDS, "schemas").default


def test_the_definition_is_the_fingerprinted_fields_and_the_options(tmp_path: Path) -> None:
    project = load(tmp_path, {"steps": {
        "s": {"run": "true"},
        "q": {"kind": "sql", "file": "a.sql"}}})
    wanted = {f.name for f in fields.STEP_FIELDS if f.fingerprint} | {fields.STEP_OPTIONS}
    for step in project.steps.values():
        assert set(step.definition()) == wanted
    assert project.steps["q"].definition()["options"] == {"file": "a.sql"}


# Two values of each key (on a step of the kind that takes it): the definition a
# fingerprint hashes changes between them exactly when the key is fingerprinted.
BASE: dict[str, dict[str, Any]] = {"python": {"kind": "python", "call": "seeds:fill"}}
VALUES: dict[str, tuple[Any, Any]] = {
    "run": ("true", ["true"]),
    "cwd": ("a", "b"),
    "env": ({"A": "1"}, {"A": "2"}),
    "search_path": (["public"], ["app", "public"]),
    "needs": (["u"], ["u", "v"]),
    "inputs": (["a"], ["b"]),
    "profiles": (["local"], ["ci"]),
    "timeout": (5, 6),
    "checkpoint": (True, False),
    "outside_database": (True, False),
    "python": ("${PY_A}", "${PY_B}"),  # ${...}: checked when the step runs
    "description": ("a", "b"),
    "rerun": ("incremental", "rebuild"),
}


def _definition(root: Path, key: str, value: Any) -> Mapping[str, str]:
    step = {**BASE.get(key, {"run": "true"}), key: value}
    others = {"u": {"run": "true"}, "v": {"run": "true"}}
    project = load(root, {"steps": {"s": step, **others}})
    return fingerprint.compute(project, ["s"])["s"].definition


@pytest.mark.parametrize("field", [f for f in fields.STEP_FIELDS if f.name != "kind"],
                         ids=lambda f: f.name)
def test_a_key_changes_the_definition_exactly_when_fingerprinted(tmp_path: Path,
                                                                 field: Field) -> None:
    a, b = VALUES[field.name]
    changed = _definition(tmp_path, field.name, a) != _definition(tmp_path, field.name, b)
    assert changed == field.fingerprint, field.name


def test_every_key_but_kind_is_tried() -> None:
    # kind: only shell takes run:, so no two kinds share a step; the test above covers it
    assert set(VALUES) == set(fields.names(fields.STEP_FIELDS)) - {"kind"}


def test_an_unordered_key_ignores_the_order(tmp_path: Path) -> None:
    assert fields.find(fields.STEP_FIELDS, "needs").unordered
    assert _definition(tmp_path, "needs", ["u", "v"]) == _definition(tmp_path, "needs",
                                                                     ["v", "u"])
    assert _definition(tmp_path, "inputs", ["a", "b"]) != _definition(tmp_path, "inputs",
                                                                      ["b", "a"])


def test_a_fingerprinted_key_added_later_leaves_old_fingerprints_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As if ``description`` were a new fingerprinted key (omit_default): a step without
    it keeps its fingerprint, one with it gets a new one."""
    plain = _definition(tmp_path, "run", "true")
    added = tuple(dataclasses.replace(f, fingerprint=True, omit_default=True)
                  if f.name == "description" else f for f in fields.STEP_FIELDS)
    monkeypatch.setattr(records, "STEP_FIELDS", added)
    assert _definition(tmp_path, "run", "true") == plain
    described = _definition(tmp_path, "description", "seeds")
    assert set(described) == set(plain) | {"description"}
    monkeypatch.setattr(records, "STEP_FIELDS", tuple(
        dataclasses.replace(f, omit_default=False) for f in added))
    assert set(_definition(tmp_path, "run", "true")) == set(plain) | {"description"}


def _object_keys(schema: Mapping[str, Any]) -> tuple[set[str], list[str]]:
    return set(schema["properties"]), list(schema.get("required", []))


def test_the_json_schema_is_the_tables() -> None:
    steps = config_schema.steps_schema()
    defs = steps["$defs"]
    for name, kind in KINDS.items():
        step_keys = {f.name for f in fields.STEP_FIELDS
                     if (f.name != "run" or kind.uses_run)
                     and (f.name != "python" or kind.uses_python)}
        props, required = _object_keys(defs[f"step-{name}"])
        assert props == step_keys | set(fields.names(kind.options)), name
        assert required == (["run"] if kind.uses_run else []) + [
            o.name for o in kind.options if o.required], name
    for schema, table in [(steps, fields.TOP_FIELDS), (defs["process"], fields.PROCESS_FIELDS),
                          (defs["service"], fields.SERVICE_FIELDS),
                          (steps["properties"]["database"], fields.DATABASE_FIELDS),
                          (steps["properties"]["cache"], fields.CACHE_FIELDS),
                          (steps["properties"]["up"], fields.UP_FIELDS)]:
        props, required = _object_keys(schema)
        assert props == set(fields.names(table))
        assert required == [f.name for f in table if f.required]


class ProbeKind:
    """A kind that exists only here: its options are declared and nothing else."""

    name = "probe"
    options: tuple[Field, ...] = (
        Field("level", int, None, "How deep.", required=True),
        Field("tags", tuple[str, ...], (), "Labels."),
        Field("mode", Literal["rebuild", "stop"]),
    )
    uses_run = False
    uses_python = False
    warm_start = False
    incremental = False

    def validate(self, options: Mapping[str, Any]) -> None:
        return None

    def default_inputs(self, step: StepSpec) -> tuple[str, ...]:
        return ()

    def command(self, step: StepSpec, ctx: StepContext) -> Command:
        return ("true",)


def test_a_new_kind_option_needs_only_its_declaration(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The proof that one declaration is enough: a kind's options are read, checked,
    fingerprinted and put in the JSON Schema with nothing but their Fields."""
    monkeypatch.setitem(KINDS, "probe", ProbeKind())
    project = load(tmp_path, {"steps": {"s": {"kind": "probe", "level": 3, "tags": ["a", 1],
                                              "mode": "stop"}}})
    step = project.steps["s"]
    assert step.options == {"level": 3, "tags": ("a", "1"), "mode": "stop"}
    assert step.definition()["options"] == {"level": 3, "tags": ["a", "1"], "mode": "stop"}
    assert refusal(tmp_path, {"steps": {"s": {"kind": "probe"}}}) == (
        "steps.yaml:2: steps.s: missing 'level' (required by kind probe)")
    assert refusal(tmp_path, {"steps": {"s": {"kind": "probe", "level": -1}}}) == (
        "steps.yaml:4: steps.s.level: expected a whole number, got a number (-1)")
    assert refusal(tmp_path, {"steps": {"s": {"kind": "probe", "level": 1,
                                              "mode": "stpo"}}}) == (
        "steps.yaml:5: steps.s.mode: invalid value 'stpo' (did you mean 'stop'?); one of: "
        "rebuild, stop")
    assert refusal(tmp_path, {"steps": {"s": {"kind": "probe", "level": 1, "tag": []}}}) == (
        "steps.yaml:5: steps.s.tag: unknown key 'tag' (did you mean 'tags'?)")
    schema = config_schema.steps_schema()["$defs"]["step-probe"]
    assert schema["required"] == ["level"]
    assert schema["properties"]["level"] == {"type": "integer", "minimum": 0,
                                             "description": "How deep."}
    assert schema["properties"]["mode"] == {"enum": ["rebuild", "stop"]}


TABLES = {
    "step": lambda: fields.markdown_table(fields.STEP_FIELDS, fingerprint_column=True),
    "kinds": lambda: fields.markdown_table((), kinds={k: v.options for k, v in KINDS.items()}),
    "process": lambda: fields.markdown_table(fields.PROCESS_FIELDS),
    "service": lambda: fields.markdown_table(fields.SERVICE_FIELDS),
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_the_readmes_tables_are_the_declarations(name: str) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(rf"<!-- fields:{name} -->\n(.*?)<!-- /fields:{name} -->", text, re.S)
    assert m, f"README.md has no <!-- fields:{name} --> table"
    expected = TABLES[name]()
    assert m.group(1) == expected, "replace the README's table with:\n" + textwrap.indent(
        expected, "    ")


# sql's file: and files: are two spellings of one thing: with file: given, files: is not
# its default in the payload
DERIVED = {("sql", "files")}


@pytest.mark.parametrize("kind_name", sorted(set(KINDS) - {"shell"}))
def test_a_kind_uses_the_defaults_its_options_declare(tmp_path: Path, kind_name: str) -> None:
    """What a kind's script gets for an option left out is the declared default (the docs
    table shows it), so the two cannot drift apart."""
    kind = KINDS[kind_name]
    project = load(tmp_path, {"steps": {"s": MINIMAL[kind_name]}})
    step = project.steps["s"]
    argv = kind.command(step, StepContext(tmp_path, tmp_path, {}, sys.executable))
    sent = json.loads(argv[-1])
    checked = [o for o in kind.options if o.name not in step.options and not o.required
               and o.default is not None and (kind_name, o.name) not in DERIVED]
    for option in checked:
        assert sent[option.name] == json.loads(json.dumps(option.default)), (kind_name,
                                                                        option.name)
    assert checked or kind_name == "sql"
