"""Services taken from a team's existing compose file (``services: {from: compose.yaml}``).

Only what devenv runs the same way is read: image, build (context, dockerfile, args),
environment, ports, healthcheck, named volumes, depends_on, command. Any other key is a
:class:`ConfigError` naming it and its line, so nothing is silently dropped. depends_on
becomes ``needs:``; devenv always waits for a needed service to be *ready* (the strict
form of compose's ``condition: service_healthy``), whichever condition is written.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from devenv import loader
from devenv.errors import ConfigError
from devenv.schema import BuildSpec, Location, PortSpec, ServiceSpec

TOP_KEYS = ("services", "volumes", "version", "name")
SERVICE_KEYS = ("image", "build", "environment", "ports", "healthcheck", "volumes",
                "depends_on", "command", "restart")
BUILD_KEYS = ("context", "dockerfile", "args")
HEALTH_KEYS = ("test", "interval", "timeout", "retries", "start_period", "start_interval",
               "disable")
DEPENDS_KEYS = ("condition", "restart", "required")
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
Node = loader.Node


def _unsupported(node: Node, key: str, where: str, allowed: tuple[str, ...]) -> ConfigError:
    child = node.value[key]
    return ConfigError(f"compose key '{key}' is not supported by devenv (it reads "
                       f"{', '.join(allowed)} {where}); remove it, or define the service in "
                       "steps.yaml instead", child.file, child.key_line or child.line,
                       child.path)


def _mapping(node: Node, allowed: tuple[str, ...], where: str) -> dict[str, Node]:
    if not isinstance(node.value, dict):
        raise loader._err(node, f"expected a mapping, got {loader._type_name(node.value)}")
    for key in node.value:
        if key not in allowed:
            raise _unsupported(node, key, where, allowed)
    return dict(node.value)


def load(file: str, root: Path, at: Node) -> list[ServiceSpec]:
    """The services of compose file ``file`` (relative to ``root``); ``at`` is the
    ``from:`` entry, for errors about the file itself."""
    path = Path(file) if Path(file).is_absolute() else root / file
    if not path.is_file():
        raise loader._err(at, f"no such compose file: {path}")
    shown = file
    doc = loader.parse_yaml(loader._read(path, shown), shown)
    if doc is None:
        raise ConfigError("the compose file is empty", shown, 1)
    top = _mapping(doc, TOP_KEYS, "at the top")
    if "services" not in top:
        raise ConfigError("the compose file has no 'services:'", shown, 1)
    context_base = path.parent
    out: list[ServiceSpec] = []
    for name, node in loader._mapping(top["services"], None).items():
        loader._name(node, name, "service")
        out.append(_service(name, node, context_base, root))
    return out


def _service(name: str, node: Node, base: Path, root: Path) -> ServiceSpec:
    m = _mapping(node, SERVICE_KEYS, "for a service")
    loc = Location(node.file, node.key_line or node.line)
    image = loader._str(m["image"]) if "image" in m else None
    build = _build(m["build"], base, root) if "build" in m else None
    if image is None and build is None:
        raise loader._err(node, "a compose service needs 'image' or 'build'")
    env: dict[str, str] = {}
    if "environment" in m:
        e = m["environment"]
        if isinstance(e.value, list):
            for item in e.value:
                text = loader._str(item, "NAME=value")
                key, sep, value = text.partition("=")
                if not sep:
                    raise loader._err(item, f"'{text}' takes its value from the shell, which "
                                            "devenv does not do: write NAME=value")
                env[key] = value
        else:
            env = loader._env_map(e)[0]
    ports: list[PortSpec] = []
    for item in loader._list(m["ports"]) if "ports" in m else []:
        ports.append(_port(item))
    volumes: dict[str, str] = {}
    for item in loader._list(m["volumes"]) if "volumes" in m else []:
        text = loader._str(item, "NAME:/container/path")
        parts = text.split(":")
        if len(parts) not in (2, 3) or not loader.NAME_RE.match(parts[0]) \
                or not parts[1].startswith("/"):
            raise loader._err(item, f"volume '{text}': devenv reads named volumes only "
                                    "(NAME:/container/path); bind mounts are not supported")
        volumes[parts[0]] = parts[1]
    healthcheck = None
    if "healthcheck" in m:
        healthcheck = _healthcheck(m["healthcheck"])
    command: tuple[str, ...] | None = None
    if "command" in m:
        c = m["command"]
        if isinstance(c.value, list):
            command = loader._str_list(c)
        else:
            # compose splits a string command like a shell would, without running one
            command = tuple(shlex.split(loader._str(c)))
    needs: list[str] = []
    if "depends_on" in m:
        d = m["depends_on"]
        if isinstance(d.value, list):
            needs = list(loader._str_list(d))
        else:
            for dep, spec in loader._mapping(d, None).items():
                cond = _mapping(spec, DEPENDS_KEYS, "under depends_on") if isinstance(
                    spec.value, dict) else {}
                if "condition" in cond:
                    loader._choice(cond["condition"], CONDITIONS)
                needs.append(dep)
    return ServiceSpec(name=name, image=image, env=env, ports=tuple(ports),
                       healthcheck=healthcheck, volumes=volumes, command=command,
                       backend="auto", loc=loc, build=build, needs=tuple(needs))


def _build(node: Node, base: Path, root: Path) -> BuildSpec:
    def rel(text: str) -> str:
        where = (base / text).resolve()
        try:
            return where.relative_to(root.resolve()).as_posix() or "."
        except ValueError:
            return str(where)

    if not isinstance(node.value, dict):
        return BuildSpec(context=rel(loader._str(node)))
    m = _mapping(node, BUILD_KEYS, "under build")
    context = rel(loader._str(m["context"])) if "context" in m else rel(".")
    return BuildSpec(context=context,
                     dockerfile=loader._str(m["dockerfile"]) if "dockerfile" in m else None,
                     args=_args(m["args"]) if "args" in m else {})


def _args(node: Node) -> dict[str, str]:
    if isinstance(node.value, list):
        out: dict[str, str] = {}
        for item in node.value:
            key, _, value = loader._str(item, "NAME=value").partition("=")
            out[key] = value
        return out
    return loader._env_map(node)[0]


def _port(node: Node) -> PortSpec:
    text = loader._env_value(node)
    # "80", "8080:80", "127.0.0.1:8080:80", "127.0.0.1::80" (any free host port)
    m = re.fullmatch(r"(?:(?:127\.0\.0\.1|localhost):)?(?:(\d{1,5})?:)?(\d{1,5})(/tcp)?",
                     text)
    if not m:
        raise loader._err(node, f"port '{text}': devenv publishes TCP ports on 127.0.0.1 "
                                "only (\"8080:80\" or \"80\")")
    return PortSpec(container=int(m.group(2)), host=int(m.group(1)) if m.group(1) else None)


def _healthcheck(node: Node) -> tuple[str, ...] | None:
    m = _mapping(node, HEALTH_KEYS, "under healthcheck")
    if "disable" in m and m["disable"].value is True:
        return None
    if "test" not in m:
        return None
    t = m["test"]
    if not isinstance(t.value, list):
        return (loader._str(t),)
    items = loader._str_list(t)
    if items[0] == "NONE":
        return None
    if items[0] == "CMD-SHELL":
        return (" ".join(items[1:]),)
    if items[0] == "CMD":
        rest = items[1:]
        # one argument would read as a shell string: keep it an argv
        return rest if len(rest) > 1 else ("sh", "-c", shlex.join(rest))
    return items
