"""The one loader for steps.yaml and services/*.yaml.

YAML is composed into nodes that keep their line numbers, then validated key by key into
the frozen records of :mod:`devenv.schema`. Which keys a section takes, and the type and
default of each, is declared once in :mod:`devenv.fields`: steps and processes are read
field by field from those tables (one reader per type, ``_READERS``); the other sections
take their keys from them and read their values by hand, as each has rules of its own. Every mistake becomes a :class:`ConfigError`
naming file, line, key path and what to do; nothing else escapes :func:`load`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devenv import graph
from devenv.errors import ConfigError, did_you_mean
from devenv.fields import (
    BUILD,
    CACHE_FIELDS,
    COMMAND,
    DATABASE_FIELDS,
    ENV,
    KIND,
    PROCESS_FIELDS,
    PROCESS_READY,
    PROFILES,
    SEARCH_PATH,
    SERVICE_FIELDS,
    STEP_FIELDS,
    TOP_FIELDS,
    UP_FIELDS,
    Field,
    choices,
    find,
    names,
)
from devenv.kinds import KINDS, OptionError
from devenv.runner import find_python, python_not_found
from devenv.schema import (
    DEFAULT_PROFILES,
    BuildSpec,
    Command,
    DatabaseSpec,
    Location,
    PortSpec,
    ProcessSpec,
    Project,
    ReadySpec,
    ServiceSpec,
    StepSpec,
)

CONFIG_NAME = "steps.yaml"
SERVICES_DIR = "services"
SUPPORTED_VERSION = 1
MAX_NODES = 100_000
MAX_DEPTH = 64

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
# Room is left for the __build / __prev / __snap_ suffixes devenv appends.
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# The keys of each section, in the order an unknown key's hint lists them: declared, with
# their types and defaults, in devenv.fields.
TOP_KEYS = names(TOP_FIELDS)
SERVICE_KEYS = names(SERVICE_FIELDS)
BUILD_KEYS = ("context", "dockerfile", "args", "network")
SERVICE_READY_KEYS = ("tcp", "http", "cmd", "port", "status")
# services: {from: compose.yaml} takes the services of a compose file (devenv.compose)
SERVICES_FROM = "from"
DATABASE_KEYS = names(DATABASE_FIELDS)
STEP_KEYS = names(STEP_FIELDS)
PROCESS_KEYS = names(PROCESS_FIELDS)
CACHE_KEYS = names(CACHE_FIELDS)
UP_KEYS = names(UP_FIELDS)
RERUN_VALUES: tuple[str, ...] = choices(find(STEP_FIELDS, "rerun").type)
UP_REBUILD_VALUES: tuple[str, ...] = choices(find(UP_FIELDS, "rebuild").type)
BACKENDS: tuple[str, ...] = choices(find(SERVICE_FIELDS, "backend").type)


# --------------------------------------------------------------------------- nodes


@dataclass
class Node:
    """A YAML value with the file and line it came from."""

    value: Any  # dict[str, Node] | list[Node] | str | int | float | bool | None
    file: str
    line: int
    path: str
    key_line: int = 0  # for mapping values: the line of the key


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "nothing (null)"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def _err(node: Node, message: str, path: str | None = None) -> ConfigError:
    # A block mapping or list starts on the line after its key: point at the key.
    return ConfigError(message, node.file, node.key_line or node.line,
                       node.path if path is None else path)


def _descend(node: Node, dotted: str) -> Node:
    """The deepest value along a dotted path below ``node``. Keys may hold dots themselves
    (``public.members``): the longest key that fits is taken at each level."""
    rest = dotted
    while rest and isinstance(node.value, dict):
        fits = [k for k in node.value if rest == k or rest.startswith(f"{k}.")]
        if not fits:
            break
        key = max(fits, key=len)
        node = node.value[key]
        rest = rest[len(key) + 1:]
    return node


def _nested_lines(node: Node, prefix: str) -> dict[str, int]:
    """``prefix.key.subkey`` -> line, for every mapping key below ``node`` (a kind's
    nested option: its run-time errors can then point at their own line)."""
    out: dict[str, int] = {}
    if isinstance(node.value, dict):
        for k, child in node.value.items():
            path = f"{prefix}.{k}"
            out[path] = child.key_line or child.line
            out.update(_nested_lines(child, path))
    return out


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class _Composer:
    """Turns a composed YAML tree into :class:`Node` values, refusing duplicate keys."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.count = 0
        self._scalars = yaml.SafeLoader("")

    def convert(self, node: yaml.Node, path: str, depth: int = 0) -> Node:
        self.count += 1
        line = node.start_mark.line + 1
        if self.count > MAX_NODES:
            raise ConfigError(f"too large: more than {MAX_NODES} values (aliases included)",
                              self.file, line)
        if depth > MAX_DEPTH:
            raise ConfigError(f"nested more than {MAX_DEPTH} levels deep", self.file, line, path)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Node] = {}
            lines: dict[str, int] = {}
            self._scalars.flatten_mapping(node)
            for knode, vnode in node.value:
                kline = knode.start_mark.line + 1
                if not isinstance(knode, yaml.ScalarNode):
                    raise ConfigError("a key must be a plain name, not a list or mapping",
                                      self.file, kline, path)
                key = self._scalar(knode, path)
                if not isinstance(key, str):
                    key = str(key).lower() if isinstance(key, bool) else str(key)
                if key in out:
                    raise ConfigError(
                        f"duplicate key '{key}' (first defined on line {lines[key]})",
                        self.file, kline, _join(path, key))
                child = self.convert(vnode, _join(path, key), depth + 1)
                child.key_line = kline
                out[key] = child
                lines[key] = kline
            return Node(out, self.file, line, path)
        if isinstance(node, yaml.SequenceNode):
            items = [self.convert(v, _join(path, i), depth + 1) for i, v in enumerate(node.value)]
            return Node(items, self.file, line, path)
        return Node(self._scalar(node, path), self.file, line, path)

    def _scalar(self, node: yaml.Node, path: str) -> Any:
        try:
            value = self._scalars.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            raise ConfigError(f"invalid value: {exc}".splitlines()[0], self.file,
                              node.start_mark.line + 1, path) from None
        if not isinstance(value, str | int | float | bool | type(None)):
            # dates, binary and sets are not part of the format; keep their text
            return str(node.value)
        if isinstance(value, str) and "\0" in value:
            # ("\0" in a quoted string) no command line, environment variable or file
            # name can hold one: the step would fail to start with a traceback
            raise ConfigError("contains a NUL character (\\0), which no command, "
                              "environment variable or file name can hold; remove it",
                              self.file, node.start_mark.line + 1, path)
        return value


# libyaml's parser where PyYAML was built with it (the wheels are): the same nodes and
# marks, about ten times faster than the pure-Python one, which every command paid on start.
_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str, file: str) -> Node | None:
    """Parse ``text`` into located nodes; ``None`` for an empty document."""
    try:
        try:
            tree = yaml.compose(text, Loader=_LOADER)
        except yaml.YAMLError:
            if _LOADER is yaml.SafeLoader:
                raise
            # the pure-Python parser says what it expected and what it got, where libyaml
            # says less ("did not find expected ','"): a broken file is worth its few ms
            tree = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or exc.context or "could not parse"
        raise ConfigError(f"YAML syntax error: {problem}", file, line) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (a NUL byte)
        line = text[:exc.position].count("\n") + 1
        raise ConfigError(f"YAML syntax error: {exc}".splitlines()[0], file, line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML syntax error: {exc}".splitlines()[0], file, 1) from None
    except RecursionError:
        raise ConfigError(f"nested more than {MAX_DEPTH} levels deep", file, 1) from None
    if tree is None:
        return None
    return _Composer(file).convert(tree, "")


# --------------------------------------------------------------------------- typed readers


def _mapping(node: Node, allowed: tuple[str, ...] | None, what: str = "a mapping",
             ) -> dict[str, Node]:
    if not isinstance(node.value, dict):
        raise _err(node, f"expected {what}, got {_type_name(node.value)}")
    if allowed is not None:
        for key, child in node.value.items():
            if key not in allowed:
                hint = did_you_mean(key, allowed) or f"; allowed keys: {', '.join(allowed)}"
                raise ConfigError(f"unknown key '{key}'{hint}", child.file,
                                  child.key_line or child.line, child.path)
    return dict(node.value)


def _str(node: Node, what: str = "a string") -> str:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _err(node, f"expected {what}, got {_type_name(value)}")
    text = str(value)
    if not text.strip():
        raise _err(node, f"expected {what}, got an empty string")
    return text


def _env_value(node: Node) -> str:
    value = node.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise _err(node, f"expected a string, got {_type_name(value)} (quote it to pass text)")


def _list(node: Node, what: str = "a list") -> list[Node]:
    if not isinstance(node.value, list):
        hint = ""
        if isinstance(node.value, str):
            hint = f" (write [{node.value}] for a list of one)"
        raise _err(node, f"expected {what}, got {_type_name(node.value)}{hint}")
    return list(node.value)


def _str_list(node: Node) -> tuple[str, ...]:
    return tuple(_str(item) for item in _list(node, "a list of strings"))


def _number(node: Node, what: str = "a number of seconds") -> float:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 \
            or value == math.inf:
        raise _err(node, f"expected {what} greater than 0, got {_describe(value)}")
    return float(value)


def _bool(node: Node) -> bool:
    if not isinstance(node.value, bool):
        raise _err(node, f"expected true or false, got {_describe(node.value)}")
    return bool(node.value)


def _describe(value: Any) -> str:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return f"{_type_name(value)} ({value!r})"
    return _type_name(value)


def _env_map(node: Node) -> tuple[dict[str, str], dict[str, int]]:
    out: dict[str, str] = {}
    lines: dict[str, int] = {}
    for key, child in _mapping(node, None, "a mapping of NAME: value").items():
        if not ENV_NAME_RE.match(key):
            raise ConfigError(
                f"'{key}' is not a valid environment variable name (letters, digits, _)",
                child.file, child.key_line or child.line, child.path)
        out[key] = _env_value(child)
        lines[key] = child.key_line or child.line
    return out, lines


def _command(node: Node) -> Command:
    if isinstance(node.value, list):
        argv = tuple(_str(item, "a string (one argument)") for item in node.value)
        if not argv:
            raise _err(node, "expected a command, got an empty list")
        return argv
    return _str(node, "a command (a shell string or an argv list)")


def _name(node: Node, key: str, what: str) -> str:
    if not NAME_RE.match(key):
        raise ConfigError(
            f"invalid {what} name '{key}': use letters, digits, '-' and '_' "
            "(at most 63, starting with a letter or digit)",
            node.file, node.key_line or node.line, node.path)
    return key


def _whole(node: Node) -> int:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _err(node, f"expected a whole number, got {_describe(value)}")
    return value


def _read_field(field: Field, node: Node, profiles: tuple[str, ...]) -> Any:
    """The value of ``field`` as its type (devenv.fields) says; ``profiles``: the known
    ones, which a ``profiles:`` key must name."""
    if field.type is PROFILES:
        return _profiles(node, profiles)
    if field.type is PROCESS_READY:
        return _ready(node)
    words = choices(field.type)
    if words:
        return _choice(node, words)
    return _READERS[field.type](node)


def _read_fields(fields: tuple[Field, ...], given: Mapping[str, Node],
                 profiles: tuple[str, ...], first: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every field of ``fields``: read from ``given``, else its default. ``first`` are read
    before the rest (in table order), so that of several mistakes the same is named as
    before the table existed."""
    out: dict[str, Any] = {}
    for f in sorted(fields, key=lambda f: f.name not in first):
        if f.name in given:
            out[f.name] = _read_field(f, given[f.name], profiles)
        else:
            # a fresh mapping each time: records must not share one
            out[f.name] = dict(f.default) if isinstance(f.default, dict) else f.default
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Node):
        return _plain(value.value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- finding files


def find_config(start: Path | None = None, file: str | Path | None = None) -> Path:
    """The steps.yaml to use: ``file`` if given, else the nearest one upwards from ``start``."""
    if file is not None:
        path = Path(file).expanduser()
        if path.is_dir():
            path = path / CONFIG_NAME
        if not path.is_file():
            raise ConfigError(f"no such file: {path} (check --file)")
        return path.resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no {CONFIG_NAME} found in {here} or any parent folder; "
        f"run devenv inside a project, or point at one with --file"
    )


def _read(path: Path, shown: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", shown) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError("not valid UTF-8 text", shown, line) from None


# --------------------------------------------------------------------------- the loader


def load(file: str | Path | None = None, start: Path | None = None, *,
         check_python: bool = True) -> Project:
    """Load and validate a project; raise :class:`ConfigError` on any mistake.

    ``check_python``: whether each step's ``python:`` must exist now. Commands that run no
    step (down, status, logs, lists) pass False: a deleted virtualenv must not keep a
    developer from stopping or inspecting the environment."""
    path = find_config(start, file)
    root = path.parent
    return load_text(_read(path, path.name), root, path, _service_files(root),
                     check_python=check_python)


def _service_files(root: Path) -> list[tuple[str, str, str]]:
    folder = root / SERVICES_DIR
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.iterdir()):
        if p.suffix in (".yaml", ".yml") and p.is_file():
            shown = f"{SERVICES_DIR}/{p.name}"
            out.append((p.stem, shown, _read(p, shown)))
    return out


def load_text(text: str, root: Path, path: Path | None = None,
              service_files: list[tuple[str, str, str]] | None = None, *,
              check_python: bool = True) -> Project:
    """Validate configuration text; ``service_files`` holds (name, shown path, text)."""
    shown = path.name if path is not None else CONFIG_NAME
    doc = parse_yaml(text, shown)
    if doc is None:
        raise ConfigError("the file is empty; it needs at least 'version: 1' and 'steps:'",
                          shown, 1)
    top = _mapping(doc, TOP_KEYS, "a mapping with 'version', 'name' and 'steps'")

    if "version" in top:
        v = top["version"]
        if v.value != SUPPORTED_VERSION or isinstance(v.value, bool):
            raise _err(v, f"unsupported version {v.value!r}; this devenv reads version "
                          f"{SUPPORTED_VERSION}")

    name = _project_name(top.get("name"), root)

    profiles = list(DEFAULT_PROFILES)
    if "profiles" in top:
        for p in _str_list(top["profiles"]):
            if p not in profiles:
                profiles.append(p)

    env: dict[str, str] = {}
    env_lines: dict[str, int] = {}
    if "env" in top:
        env, env_lines = _env_map(top["env"])

    services = _services(top.get("services"), service_files or [], shown, root)
    steps = _steps(top.get("steps"), tuple(profiles), doc)
    if check_python:
        _check_python(steps, root)
    processes = _processes(top.get("processes"), tuple(profiles), root)
    database = _database(top.get("database"), services)

    cache_keep: int = find(CACHE_FIELDS, "keep").default
    cache_remote: str | None = None
    cache_sign_key: str | None = None
    cache_trust: tuple[str, ...] = ()
    if "cache" in top:
        cache = _mapping(top["cache"], CACHE_KEYS)
        if "keep" in cache:
            cache_keep = _whole(cache["keep"])
        if "remote" in cache:
            cache_remote = _str(cache["remote"])
            if not cache_remote.startswith("oci://") or "/" not in cache_remote[6:]:
                raise _err(cache["remote"], f"expected oci://REGISTRY/REPOSITORY, got "
                           f"{cache_remote!r} (e.g. oci://ghcr.io/acme/shop-db)")
        if "sign_key" in cache:
            cache_sign_key = str(root / _str(cache["sign_key"]))
        if "trust" in cache:
            cache_trust = tuple(str(root / t) for t in _str_list(cache["trust"]))

    up_rebuild: str = find(UP_FIELDS, "rebuild").default
    if "up" in top:
        up = _mapping(top["up"], UP_KEYS)
        if "rebuild" in up:
            up_rebuild = _choice(up["rebuild"], UP_REBUILD_VALUES)

    _check_names_unique(steps, services, processes)
    _check_needs(steps, services, processes)

    project = Project(
        root=root,
        file=path or root / CONFIG_NAME,
        name=name,
        services=services,
        database=database,
        env=env,
        steps={s.name: s for s in steps},
        processes={p.name: p for p in processes},
        profiles=tuple(profiles),
        cache_keep=cache_keep,
        env_lines=env_lines,
        up_rebuild=up_rebuild,
        cache_remote=cache_remote,
        cache_sign_key=cache_sign_key,
        cache_trust=cache_trust,
    )

    graph.check_acyclic(project)
    return project


def _project_name(node: Node | None, root: Path) -> str:
    if node is None:
        guess = re.sub(r"[^a-z0-9_-]+", "-", root.name.lower()).strip("-_") or "devenv"
        return guess[:40]
    value = _str(node)
    if not PROJECT_RE.match(value):
        raise _err(node, f"invalid project name '{value}': use lowercase letters, digits, "
                         "'-' and '_' (at most 40); it prefixes containers and volumes")
    return value


def _services(node: Node | None, files: list[tuple[str, str, str]], shown: str,
              root: Path | None = None) -> dict[str, ServiceSpec]:
    out: dict[str, ServiceSpec] = {}
    if node is not None:
        for key, child in _mapping(node, None).items():
            if key == SERVICES_FROM and not isinstance(child.value, dict):
                # compose reads YAML with this module's nodes and helpers: imported here, not at
                # the top, to keep the two from importing each other at start
                from devenv import compose  # keep-local

                for svc in compose.load(_str(child, "a compose file (compose.yaml)"),
                                        root or Path.cwd(), child):
                    if svc.name in out:
                        raise _err(child, f"service '{svc.name}' of the compose file is "
                                          f"also defined in {shown}:{out[svc.name].loc.line}")
                    out[svc.name] = svc
                continue
            _name(child, key, "service")
            if key in out:
                raise _err(child, f"service '{key}' is also defined by the compose file "
                                  f"({out[key].loc})")
            out[key] = _service(key, child)
    for key, file, text in files:
        doc = parse_yaml(text, file)
        if doc is None:
            raise ConfigError("the file is empty; it should hold one service (image:, ...)",
                              file, 1)
        doc.path = f"services.{key}"
        _rebase(doc, f"services.{key}")
        if not NAME_RE.match(key):
            raise ConfigError(f"invalid service name '{key}' (from the file name): use "
                              "letters, digits, '-' and '_'", file, 1)
        if key in out:
            raise ConfigError(
                f"service '{key}' is defined twice: here and in {shown}:{out[key].loc.line}",
                file, 1)
        out[key] = _service(key, doc)
    check_service_needs(out)
    return out


def check_service_needs(services: Mapping[str, ServiceSpec]) -> None:
    """Every service a service needs exists, and they form no cycle."""
    for svc in services.values():
        for i, need in enumerate(svc.needs):
            if need == svc.name:
                what = f"service '{need}' cannot need itself"
            elif need not in services:
                what = f"unknown service '{need}'{did_you_mean(need, services)}"
            else:
                continue
            raise ConfigError(what, svc.loc.file, svc.loc.line,
                              f"services.{svc.name}.needs[{i}]")
    try:
        graph.walk(services, lambda n: services[n].needs)
    except graph.Cycle as exc:
        first = services[exc.names[0]]
        raise ConfigError(f"dependency cycle between services: {exc}",
                          first.loc.file, first.loc.line,
                          f"services.{first.name}.needs") from None


def _rebase(node: Node, path: str) -> None:
    """Give a services/NAME.yaml tree the key paths it would have inside steps.yaml."""
    node.path = path
    if isinstance(node.value, dict):
        for k, child in node.value.items():
            _rebase(child, _join(path, k))
    elif isinstance(node.value, list):
        for i, child in enumerate(node.value):
            _rebase(child, _join(path, i))


def _service(name: str, node: Node) -> ServiceSpec:
    m = _mapping(node, SERVICE_KEYS)
    env: dict[str, str] = _env_map(m["env"])[0] if "env" in m else {}
    ports: list[PortSpec] = []
    for item in _list(m["ports"]) if "ports" in m else []:
        ports.append(_port(item))
    volumes: dict[str, str] = {}
    if "volumes" in m:
        for vkey, vnode in _mapping(m["volumes"], None, "a mapping of name: /container/path"
                                    ).items():
            _name(vnode, vkey, "volume")
            target = _str(vnode, "an absolute path in the container")
            if not target.startswith("/"):
                raise _err(vnode, f"expected an absolute path in the container, got '{target}'")
            volumes[vkey] = target
    backend = _str(m["backend"]) if "backend" in m else find(SERVICE_FIELDS, "backend").default
    if backend not in BACKENDS:
        raise _err(m["backend"], f"unknown backend '{backend}'{did_you_mean(backend, BACKENDS)}"
                                 f"; one of: {', '.join(BACKENDS)}")
    image = _str(m["image"]) if "image" in m else None
    build = _build(m["build"]) if "build" in m else None
    if image is None and build is None and backend in ("auto", "docker"):
        raise _err(node, "missing 'image' (e.g. image: postgres:16) or 'build' (a folder "
                         "with a Dockerfile)")
    healthcheck = None
    if "healthcheck" in m:
        hc = _command(m["healthcheck"])
        healthcheck = (hc,) if isinstance(hc, str) else hc
    command = None
    if "command" in m:
        c = _command(m["command"])
        command = ("sh", "-c", c) if isinstance(c, str) else c
    url = _str(m["url"], "a URL template (redis://${host}:${port}/0)") if "url" in m else None
    if url is not None:
        _check_url(m["url"], url, ports)
    return ServiceSpec(name=name, image=image, env=env, ports=tuple(ports),
                       healthcheck=healthcheck, volumes=volumes, command=command,
                       backend=backend, loc=Location(node.file, node.key_line or node.line),
                       backend_loc=Location(m["backend"].file, m["backend"].key_line
                                            or m["backend"].line) if "backend" in m else None,
                       build=build, url=url,
                       needs=_str_list(m["needs"]) if "needs" in m else (),
                       ready=_service_ready(m["ready"]) if "ready" in m else None,
                       ready_timeout=_number(m["ready_timeout"]) if "ready_timeout" in m
                       else None)


URL_VAR_RE = re.compile(r"\$\{([^}]*)\}")


def url_names(ports: tuple[PortSpec, ...] | list[PortSpec]) -> set[str]:
    """The ``${...}`` names a service's ``url:`` may use."""
    return {"host", "port", *(f"port_{p.container}" for p in ports)}


def _check_url(node: Node, url: str, ports: list[PortSpec]) -> None:
    known = url_names(ports)
    for m in URL_VAR_RE.finditer(url):
        if m.group(1) not in known:
            raise _err(node, f"unknown ${{{m.group(1)}}} in the URL template; it may use "
                             f"{', '.join('${' + k + '}' for k in sorted(known))}")


def _build(node: Node) -> BuildSpec:
    """``build: FOLDER`` or ``{context: FOLDER, dockerfile:, args:, network:}``."""
    if not isinstance(node.value, dict):
        return BuildSpec(context=_str(node, "a folder (the build context) or a mapping"))
    m = _mapping(node, BUILD_KEYS)
    if "context" not in m:
        raise _err(node, "missing 'context' (the folder sent to the build)")
    return BuildSpec(
        context=_str(m["context"]),
        dockerfile=_str(m["dockerfile"]) if "dockerfile" in m else None,
        args=_env_map(m["args"])[0] if "args" in m else {},
        network=_str(m["network"]) if "network" in m else None)


def _service_ready(node: Node) -> ReadySpec:
    """A service's ``ready:``: ``tcp``, ``http`` or ``{tcp: PORT}``, ``{http: /path,
    port: PORT, status: [200]}``, ``{cmd: COMMAND}`` (run inside the container)."""
    if not isinstance(node.value, dict):
        text = _str(node)
        if text not in ("tcp", "http"):
            raise _err(node, f"invalid ready check '{text}': tcp, http, {{tcp: PORT}}, "
                             "{http: /path, port: PORT}, or {cmd: COMMAND}")
        return ReadySpec(kind=text)
    m = _mapping(node, SERVICE_READY_KEYS)
    kinds = [k for k in ("tcp", "http", "cmd") if k in m]
    if len(kinds) != 1:
        raise _err(node, "expected exactly one of tcp:, http:, cmd:")
    kind = kinds[0]
    port: int | None = None
    path = "/"
    command: tuple[str, ...] | None = None
    if "port" in m:
        port = _port(m["port"]).container
    if kind == "tcp" and m["tcp"].value is not None:
        port = _port(m["tcp"]).container
    if kind == "http":
        path = _str(m["http"], "a path (/health)")
        if not path.startswith("/"):
            raise _err(m["http"], f"expected a path starting with /, got '{path}' (the host "
                                  "and port are the service's published ones)")
    if kind == "cmd":
        c = _command(m["cmd"])
        command = ("sh", "-c", c) if isinstance(c, str) else c
    status: tuple[int, ...] = ()
    if "status" in m:
        if kind != "http":
            raise _err(m["status"], "status: is for an http: check")
        items = m["status"].value if isinstance(m["status"].value, list) else [m["status"]]
        codes = []
        for item in items:
            v = item.value
            if isinstance(v, bool) or not isinstance(v, int) or not 100 <= v <= 599:
                raise _err(item, f"expected an HTTP status code (100-599), got {_describe(v)}")
            codes.append(v)
        status = tuple(sorted(set(codes)))
    return ReadySpec(kind=kind, port=port, path=path, command=command, status=status)


def _port(node: Node) -> PortSpec:
    text = _env_value(node)
    m = re.fullmatch(r"(?:(\d{1,5}):)?(\d{1,5})", text)
    if not m:
        raise _err(node, f"invalid port '{text}': write \"5432\" (a free host port is "
                         "chosen) or \"15432:5432\" (host:container)")
    host = int(m.group(1)) if m.group(1) else None
    container = int(m.group(2))
    for p in (host, container):
        if p is not None and not 0 < p < 65536:
            raise _err(node, f"invalid port '{text}': ports are 1 to 65535")
    return PortSpec(container=container, host=host)


def _database(node: Node | None, services: Mapping[str, ServiceSpec]) -> DatabaseSpec | None:
    if node is None:
        return None
    m = _mapping(node, DATABASE_KEYS)
    for required in ("service", "name"):
        if required not in m:
            raise _err(node, f"missing '{required}'", "database")
    svc_node = m["service"]
    svc = _str(svc_node)
    if svc not in services:
        known = f"; defined services: {', '.join(services)}" if services else \
            "; define it under services: or in services/NAME.yaml"
        raise _err(svc_node, f"unknown service '{svc}'{did_you_mean(svc, services) or known}")
    dbname = _str(m["name"])
    if not IDENT_RE.match(dbname):
        raise _err(m["name"], f"invalid database name '{dbname}': use letters, digits and _ "
                              "(at most 40, not starting with a digit)")
    schemas: tuple[str, ...] = find(DATABASE_FIELDS, "schemas").default
    if "schemas" in m:
        schemas = _str_list(m["schemas"])
        for i, s in enumerate(schemas):
            if not IDENT_RE.match(s):
                item = m["schemas"].value[i]
                raise _err(item, f"invalid schema name '{s}': use letters, digits and _")
    service = services[svc]
    user = _str(m["user"]) if "user" in m else service.env.get("POSTGRES_USER", "postgres")
    password = _str(m["password"]) if "password" in m else service.env.get(
        "POSTGRES_PASSWORD", "")
    return DatabaseSpec(service=svc, name=dbname, schemas=schemas, user=user,
                        password=password, loc=Location(node.file, node.key_line or node.line))


def _profiles(node: Node, known: tuple[str, ...]) -> tuple[str, ...]:
    listed = _str_list(node)
    for i, p in enumerate(listed):
        if p not in known:
            item = node.value[i]
            raise _err(item, f"unknown profile '{p}'{did_you_mean(p, known)}; known profiles: "
                             f"{', '.join(known)} (declare more under top-level profiles:)")
    return listed


def _steps(node: Node | None, profiles: tuple[str, ...], doc: Node) -> list[StepSpec]:
    if node is None:
        raise _err(doc, "missing 'steps' (a mapping of step name to its definition)", "steps")
    out: list[StepSpec] = []
    for key, child in _mapping(node, None, "a mapping of step name: definition").items():
        _name(child, key, "step")
        raw = _mapping(child, None)
        kind_name = _str(raw["kind"]) if "kind" in raw else find(STEP_FIELDS, "kind").default
        kind = KINDS.get(kind_name)
        if kind is None:
            raise _err(raw["kind"], f"unknown kind '{kind_name}'"
                       f"{did_you_mean(kind_name, KINDS) or '; one of: ' + ', '.join(KINDS)}")
        _mapping(child, STEP_KEYS + names(kind.options))
        if kind.uses_run and "run" not in raw:
            raise _err(child, "missing 'run' (a shell string or an argv list), or a 'kind:' "
                              f"({', '.join(k for k in KINDS if k != 'shell')})")
        if not kind.uses_run and "run" in raw:
            raise _err(raw["run"], f"'run' is not used by kind {kind_name}; remove it or drop "
                                   "the kind")
        if "python" in raw and not kind.uses_python:
            if kind.uses_run:
                why = ("python: is for the typed kinds; a run: command starts the interpreter "
                       "it names (e.g. run: .venv/bin/python seed.py)")
            else:
                why = (f"kind {kind_name} runs in devenv's own interpreter, so python: would "
                       "have no effect; remove it")
            raise _err(raw["python"], why)
        options: dict[str, Any] = {}
        for option in kind.options:
            if option.name in raw:
                options[option.name] = _read_field(option, raw[option.name], profiles)
            elif option.required:
                raise _err(child, f"missing '{option.name}' (required by kind {kind_name})")
        try:
            kind.validate(options)
        except OptionError as exc:
            target = raw.get(exc.key, child)
            if exc.path and exc.key in raw:
                raise _err(_descend(target, exc.path), exc.message,
                           f"{target.path}.{exc.path}") from None
            raise _err(target, exc.message) from None
        # env and needs first: their mistakes were always named before the others'
        values = _read_fields(STEP_FIELDS, raw, profiles, first=("env", "needs"))
        env_lines = {f"env.{k}": n for k, n in _env_map(raw["env"])[1].items()} \
            if "env" in raw else {}
        step = StepSpec(
            name=key,
            options=options,
            loc=Location(child.file, child.key_line or child.line),
            key_lines={k: v.key_line or v.line for k, v in raw.items()}
            | env_lines
            | _item_lines(raw, "needs")
            | {k: v for o in options if isinstance(raw[o].value, dict)
               for k, v in _nested_lines(raw[o], o).items()},
            **values,
        )
        if not step.inputs:
            step = _with_inputs(step, kind.default_inputs(step))
        out.append(step)
    return out


def _check_python(steps: list[StepSpec], root: Path) -> None:
    """What ``python:`` names (relative to the step's ``cwd:``) must exist when the file
    loads, not fail as "command not found" at run time. A value with ``${...}`` in it (or in
    ``cwd:``) is checked when the step runs, with the step's environment."""
    import os
    import sys

    # the PATH steps get (environment.step_environment puts devenv's bin folder first)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    for step in steps:
        if not step.python or "$" in step.python or "$" in (step.cwd or ""):
            continue
        cwd = root / step.cwd if step.cwd else root
        if find_python(cwd, step.python, path) is None:
            raise ConfigError(python_not_found(step.python, step.cwd or "."), step.loc.file,
                              step.key_lines.get("python", step.loc.line),
                              f"steps.{step.name}.python")


def _with_inputs(step: StepSpec, inputs: tuple[str, ...]) -> StepSpec:
    from dataclasses import replace

    return replace(step, inputs=inputs)


def _item_lines(raw: dict[str, Node], key: str) -> dict[str, int]:
    node = raw.get(key)
    if node is None or not isinstance(node.value, list):
        return {}
    return {f"{key}[{i}]": item.line for i, item in enumerate(node.value)}


def _choice(node: Node, values: tuple[str, ...]) -> str:
    text = _str(node)
    if text not in values:
        raise _err(node, f"invalid value {text!r}{did_you_mean(text, values)}; one of: "
                         f"{', '.join(values)}")
    return text


def _search_path(node: Node) -> tuple[str, ...]:
    schemas = _str_list(node)
    for i, s in enumerate(schemas):
        if not IDENT_RE.match(s) and s != "$user":
            raise _err(node.value[i], f"invalid schema name '{s}': use letters, digits and _")
    return schemas


# The reader of each type a field may have (devenv.fields); PROFILES, PROCESS_READY and
# Literal[...] choices are read by _read_field, as they need more than the node.
_READERS: dict[Any, Callable[[Node], Any]] = {
    str: _str,
    tuple[str, ...]: _str_list,
    float: _number,
    int: _whole,
    bool: _bool,
    dict: lambda n: _plain(_mapping(n, None)),
    object: _plain,
    COMMAND: _command,
    ENV: lambda n: _env_map(n)[0],
    SEARCH_PATH: _search_path,
    KIND: _str,
    BUILD: _build,
}


def _processes(node: Node | None, profiles: tuple[str, ...],
               root: Path) -> list[ProcessSpec]:
    if node is None:
        return []
    out = []
    for key, child in _mapping(node, None, "a mapping of process name: definition").items():
        _name(child, key, "process")
        m = _mapping(child, PROCESS_KEYS)
        if "run" not in m:
            raise _err(child, "missing 'run' (the command that starts the process)")
        # ready first: its mistakes were always named before the others'
        values = _read_fields(PROCESS_FIELDS, m, profiles, first=("ready",))
        values["ready"], values["ready_status"] = values["ready"] or (None, ())
        if values["build"] is not None:
            _check_process_build(m, values["build"], root)
        out.append(ProcessSpec(name=key, loc=Location(child.file, child.key_line or child.line),
                               **values))
    return out


def _check_process_build(m: Mapping[str, Node], build: BuildSpec, root: Path) -> None:
    """A process's ``build:`` names a folder of the repository with a Dockerfile, and
    stands alone: the image it builds is the one the process runs. Checked as the file
    loads (the process may start long after the steps), each mistake at its own line."""
    node = m["build"]
    if "image" in m:
        raise _err(m["image"], "a process takes image: or build:, not both (build: makes "
                               "the image it runs); remove one")
    sub = node.value if isinstance(node.value, dict) else {}
    ctx = Path(build.context) if Path(build.context).is_absolute() else root / build.context
    if not ctx.is_dir():
        raise _err(sub.get("context", node),
                   f"build context '{build.context}' is not a folder (relative to "
                   f"{CONFIG_NAME}, or absolute)")
    dockerfile = ctx / (build.dockerfile or "Dockerfile")
    if not dockerfile.is_file():
        raise _err(sub.get("dockerfile", node),
                   f"no {build.dockerfile or 'Dockerfile'} in {build.context}/ (dockerfile: "
                   "is relative to the context)")


READY_KEYS = ("http", "status")


def _ready(node: Node) -> tuple[str, tuple[int, ...]]:
    """A process's ``ready:``: a string (URL, tcp://HOST:PORT, port, cmd: COMMAND), or
    ``{http: URL, status: [200, 401]}`` naming the HTTP statuses that count as ready."""
    if not isinstance(node.value, dict):
        ready = _str(node)
        if not re.match(r"^(https?://|tcp://|\d{1,5}$|cmd:)", ready):
            raise _err(node, f"invalid ready check '{ready}': an http(s):// URL, "
                             "tcp://HOST:PORT, a port number, cmd: COMMAND, or "
                             "{http: URL, status: [200, 401]}")
        return ready, ()
    m = _mapping(node, READY_KEYS)
    if "http" not in m:
        raise _err(node, "missing 'http' (the URL to ask): write {http: URL, status: [200]}")
    url = _str(m["http"])
    if not re.match(r"^https?://", url):
        raise _err(m["http"], f"expected an http:// or https:// URL, got '{url}'")
    if "status" not in m:
        return url, ()
    raw = m["status"]
    items = raw.value if isinstance(raw.value, list) else [raw]
    codes: list[int] = []
    for item in items:
        value = item.value
        if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
            raise _err(item, f"expected an HTTP status code (100-599), got {_describe(value)}")
        codes.append(value)
    if not codes:
        raise _err(raw, "expected at least one HTTP status code, e.g. [200, 401]")
    return url, tuple(sorted(set(codes)))


def _check_names_unique(steps: list[StepSpec], services: Mapping[str, ServiceSpec],
                        processes: list[ProcessSpec]) -> None:
    for step in steps:
        if step.name in services:
            svc = services[step.name]
            raise ConfigError(f"name '{step.name}' is already used by a service ({svc.loc})",
                              step.loc.file, step.loc.line, f"steps.{step.name}")
    step_names = {s.name for s in steps}
    for p in processes:
        if p.name in services or p.name in step_names:
            raise ConfigError(f"name '{p.name}' is already used by a step or service",
                              p.loc.file, p.loc.line, f"processes.{p.name}")


def _check_needs(steps: list[StepSpec], services: Mapping[str, ServiceSpec],
                 processes: list[ProcessSpec]) -> None:
    by_name = {s.name: s for s in steps}
    for step in steps:
        for i, need in enumerate(step.needs):
            path = f"steps.{step.name}.needs[{i}]"
            line = step.key_lines.get(f"needs[{i}]", step.loc.line)
            if need == step.name:
                raise ConfigError(f"step '{need}' cannot need itself", step.loc.file, line, path)
            if need in by_name:
                other = by_name[need]
                if other.profiles and (not step.profiles
                                       or not set(step.profiles) <= set(other.profiles)):
                    mine = ", ".join(step.profiles) if step.profiles else "every profile"
                    raise ConfigError(
                        f"'{need}' runs only in profile {', '.join(other.profiles)}, but "
                        f"'{step.name}' runs in {mine}; give '{step.name}' the same profiles "
                        "or drop the dependency", step.loc.file, line, path)
                continue
            if need in services:
                continue
            raise ConfigError(f"unknown step '{need}'"
                              f"{did_you_mean(need, [*by_name, *services])}",
                              step.loc.file, line, path)
    procs = {p.name: p for p in processes}
    for p in processes:
        for i, need in enumerate(p.needs):
            if need == p.name:
                raise ConfigError(f"process '{need}' cannot need itself", p.loc.file,
                                  p.loc.line, f"processes.{p.name}.needs[{i}]")
            if need not in by_name and need not in services and need not in procs:
                raise ConfigError(f"unknown step, service or process '{need}'"
                                  f"{did_you_mean(need, [*by_name, *services, *procs])}",
                                  p.loc.file, p.loc.line, f"processes.{p.name}.needs[{i}]")
    _check_process_cycles(procs)


def _check_process_cycles(procs: Mapping[str, ProcessSpec]) -> None:
    try:
        graph.walk(procs, lambda n: procs[n].needs)
    except graph.Cycle as exc:
        first = procs[exc.names[0]]
        raise ConfigError(f"dependency cycle: {exc}", first.loc.file,
                          first.loc.line, f"processes.{first.name}.needs") from None
