"""The configuration contract: what loads, and the exact message for each mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from devenv import loader
from devenv.errors import ConfigError
from devenv.schema import BuildSpec

VALID = """\
version: 1
name: demo
services:
  db:
    image: postgres:15
    env: {POSTGRES_PASSWORD: devenv}
    ports: ["5432"]
    healthcheck: [pg_isready, -U, postgres]
    volumes: {data: /var/lib/postgresql/data}
database:
  service: db
  name: demo_dev
  schemas: [public, flask, django]
env:
  JWT_SECRET: dev-only-secret
steps:
  flask-migrate:
    run: flask db upgrade
    cwd: apps/flask_app
    env: {FLASK_APP: app.py}
    search_path: [flask, public]
    needs: [db]
    inputs: ["apps/flask_app/migrations/**"]
  django-migrate:
    run: [python, manage.py, migrate]
    needs: [flask-migrate]
  local-user:
    run: python manage.py ensure_local_user
    needs: [django-migrate]
    profiles: [local]
processes:
  flask:
    run: flask run --port 5001
    cwd: apps/flask_app
    needs: [flask-migrate]
    ready: http://127.0.0.1:5001/health
"""


def load(root: Path, text: str, services: dict[str, str] | None = None) -> object:
    (root / "steps.yaml").write_text(textwrap.dedent(text))
    if services:
        (root / "services").mkdir(exist_ok=True)
        for name, body in services.items():
            (root / "services" / f"{name}.yaml").write_text(textwrap.dedent(body))
    return loader.load(root / "steps.yaml")


def error(root: Path, text: str, services: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(root, text, services)
    return str(info.value)


def test_the_documented_example_loads(tmp_path: Path) -> None:
    project = loader.load_text(VALID, tmp_path)
    assert project.name == "demo"
    assert list(project.steps) == ["flask-migrate", "django-migrate", "local-user"]
    step = project.steps["flask-migrate"]
    assert step.run == "flask db upgrade"
    assert step.search_path == ("flask", "public")
    assert step.needs == ("db",)
    assert dict(step.env) == {"FLASK_APP": "app.py"}
    assert project.steps["django-migrate"].run == ("python", "manage.py", "migrate")
    assert project.steps["local-user"].profiles == ("local",)
    assert project.database is not None
    assert project.database.password == "devenv"
    assert project.database.user == "postgres"
    assert project.services["db"].ports[0].container == 5432
    assert project.services["db"].ports[0].host is None
    assert project.processes["flask"].ready == "http://127.0.0.1:5001/health"
    assert project.steps["flask-migrate"].loc.line == 17


def test_ready_with_the_statuses_that_count(tmp_path: Path) -> None:
    (tmp_path / "steps.yaml").write_text(textwrap.dedent("""\
        version: 1
        steps:
          a: {run: "true"}
        processes:
          web:
            run: "true"
            ready: {http: "http://127.0.0.1:8000/", status: [401, 200, 200]}
          api:
            run: "true"
            ready: {http: "http://127.0.0.1:8001/"}
          old:
            run: "true"
            ready: http://127.0.0.1:8002/
        """))
    procs = loader.load(tmp_path / "steps.yaml").processes
    assert (procs["web"].ready, procs["web"].ready_status) == ("http://127.0.0.1:8000/",
                                                               (200, 401))
    assert (procs["api"].ready, procs["api"].ready_status) == ("http://127.0.0.1:8001/", ())
    assert (procs["old"].ready, procs["old"].ready_status) == ("http://127.0.0.1:8002/", ())


def test_found_from_a_sub_folder(tmp_path: Path) -> None:
    (tmp_path / "steps.yaml").write_text(VALID)
    sub = tmp_path / "apps" / "deep"
    sub.mkdir(parents=True)
    project = loader.load(start=sub)
    assert project.root == tmp_path.resolve()


def test_no_config_anywhere(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        loader.load(start=tmp_path)
    assert str(info.value) == (
        f"no steps.yaml found in {tmp_path.resolve()} or any parent folder; run devenv inside "
        "a project, or point at one with --file")


def test_services_from_their_own_files(tmp_path: Path) -> None:
    project = load(tmp_path, """\
        version: 1
        database: {service: postgres, name: app_dev}
        steps:
          migrate: {run: "true", needs: [postgres]}
        """, {"postgres": "image: postgres:16\nenv: {POSTGRES_PASSWORD: pw}\nports: ['5432']\n"})
    assert project.services["postgres"].image == "postgres:16"
    assert project.services["postgres"].loc.file == "services/postgres.yaml"
    assert project.database is not None and project.database.password == "pw"


CASES = [
    pytest.param(
        """\
        version: 1
        steps:
          flask-migrate: {run: "true"}
          django-migrate:
            run: "true"
            needs: [flask-migrte]
        """,
        "steps.yaml:6: steps.django-migrate.needs[0]: unknown step 'flask-migrte' "
        "(did you mean 'flask-migrate'?)",
        id="unknown-step-did-you-mean",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          a: {run: "true", needs: [c]}
          b: {run: "true", needs: [a]}
          c: {run: "true", needs: [b]}
        """,
        "steps.yaml:3: steps.a.needs[0]: dependency cycle: a -> c -> b -> a",
        id="cycle-names-the-whole-cycle",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          a:
            run: "true"
            cwd: x
            run: "false"
        """,
        "steps.yaml:6: steps.a.run: duplicate key 'run' (first defined on line 4)",
        id="duplicate-key",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          a: {run: "true"}
          a: {run: "false"}
        """,
        "steps.yaml:4: steps.a: duplicate key 'a' (first defined on line 3)",
        id="duplicate-step",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          a:
            cwd: somewhere
        """,
        "steps.yaml:3: steps.a: missing 'run' (a shell string or an argv list), or a 'kind:' ("
        + "{kinds})",
        id="missing-run",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          a:
            run: "true"
            needs: db
        """,
        "steps.yaml:5: steps.a.needs: expected a list of strings, got a string "
        "(write [db] for a list of one)",
        id="wrong-type-needs",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          a:
            run: {cmd: x}
        """,
        "steps.yaml:4: steps.a.run: expected a command (a shell string or an argv list), "
        "got a mapping",
        id="wrong-type-run",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          a:
            run: "true"
            timeout: soon
        """,
        "steps.yaml:5: steps.a.timeout: expected a number of seconds greater than 0, "
        "got a string ('soon')",
        id="wrong-type-timeout",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          a:
            run: "true"
            rn: "false"
        """,
        "steps.yaml:5: steps.a.rn: unknown key 'rn' (did you mean 'run'?)",
        id="unknown-key-did-you-mean",
    ),
    pytest.param(
        """\
        version: 1
        stpes:
          a: {run: "true"}
        """,
        "steps.yaml:2: stpes: unknown key 'stpes' (did you mean 'steps'?)",
        id="unknown-top-level-key",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          a:
            run: "true"
            profiles: [lcoal]
        """,
        "steps.yaml:5: steps.a.profiles[0]: unknown profile 'lcoal' (did you mean 'local'?); "
        "known profiles: local, ci (declare more under top-level profiles:)",
        id="unknown-profile",
    ),
    pytest.param(
        """\
        version: 1
        services:
          db: {image: postgres:15}
        database:
          service: pg
          name: app_dev
        steps:
          a: {run: "true"}
        """,
        "steps.yaml:5: database.service: unknown service 'pg'; defined services: db",
        id="unknown-service",
    ),
    pytest.param(
        """\
        version: 1
        services:
          postgres: {image: postgres:15}
        database:
          service: postgre
          name: app_dev
        steps:
          a: {run: "true"}
        """,
        "steps.yaml:5: database.service: unknown service 'postgre' (did you mean 'postgres'?)",
        id="unknown-service-did-you-mean",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          a:
            run: "true"
            needs: [b
        """,
        "steps.yaml:6: YAML syntax error: expected ',' or ']', but got '<stream end>'",
        id="yaml-syntax-error",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          a: {run: "true"}
         b: {run: "true"}
        """,
        "steps.yaml:4: YAML syntax error: expected <block end>, but found '<block mapping start>'",
        id="yaml-bad-indent",
    ),
    pytest.param("", "steps.yaml:1: the file is empty; it needs at least 'version: 1' and 'steps:'",
                 id="empty-file"),
    pytest.param("- a\n- b\n", "steps.yaml:1: expected a mapping with 'version', 'name' and "
                 "'steps', got a list", id="top-level-list"),
    pytest.param("version: 2\nsteps: {}\n",
                 "steps.yaml:1: version: unsupported version 2; this devenv reads version 1",
                 id="unsupported-version"),
    pytest.param("version: 1\n", "steps.yaml:1: steps: missing 'steps' (a mapping of step name "
                 "to its definition)", id="missing-steps"),
    pytest.param(
        """\
        version: 1
        steps:
          a:
            run: "true"
            needs: [a]
        """,
        "steps.yaml:5: steps.a.needs[0]: step 'a' cannot need itself",
        id="needs-itself",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          "bad name!": {run: "true"}
        """,
        "steps.yaml:3: steps.bad name!: invalid step name 'bad name!': use letters, digits, '-' "
        "and '_' (at most 63, starting with a letter or digit)",
        id="bad-step-name",
    ),
    pytest.param(
        """\
        version: 1
        services:
          db: {image: postgres:15}
        steps:
          db: {run: "true"}
        """,
        "steps.yaml:5: steps.db: name 'db' is already used by a service (steps.yaml:3)",
        id="step-named-like-service",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          seed: {run: "true", profiles: [local]}
          report: {run: "true", needs: [seed]}
        """,
        "steps.yaml:4: steps.report.needs[0]: 'seed' runs only in profile local, but 'report' "
        "runs in every profile; give 'report' the same profiles or drop the dependency",
        id="needs-across-profiles",
    ),
    pytest.param(
        """\
        version: 1
        services:
          db: {image: postgres:15}
        database:
          service: db
          name: "x; DROP DATABASE y"
        steps:
          a: {run: "true"}
        """,
        "steps.yaml:6: database.name: invalid database name 'x; DROP DATABASE y': use letters, "
        "digits and _ (at most 40, not starting with a digit)",
        id="hostile-database-name",
    ),
    pytest.param(
        """\
        version: 1
        services:
          db:
            image: postgres:15
            ports: ["0.0.0.0:5432:5432"]
        steps:
          a: {run: "true"}
        """,
        "steps.yaml:5: services.db.ports[0]: invalid port '0.0.0.0:5432:5432': write \"5432\" "
        "(a free host port is chosen) or \"15432:5432\" (host:container)",
        id="port-with-interface",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          a:
            run: "true"
            env: {MY VAR: 1}
        """,
        "steps.yaml:5: steps.a.env.MY VAR: 'MY VAR' is not a valid environment variable name "
        "(letters, digits, _)",
        id="bad-env-name",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          a:
            run: "true"
            kind: djngo-migrate
        """,
        "steps.yaml:5: steps.a.kind: unknown kind 'djngo-migrate'{kind_hint}",
        id="unknown-kind",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          a: {run: "true"}
        processes:
          web:
            run: "true"
            ready: localhost:8000
        """,
        "steps.yaml:7: processes.web.ready: invalid ready check 'localhost:8000': an http(s):// "
        "URL, tcp://HOST:PORT, a port number, cmd: COMMAND, or {{http: URL, status: [200, 401]}}",
        id="bad-ready",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          a: {run: "true"}
        processes:
          web:
            run: "true"
            ready:
              http: http://127.0.0.1:8000/
              status: [200, 4011]
        """,
        "steps.yaml:9: processes.web.ready.status[1]: expected an HTTP status code (100-599), "
        "got a number (4011)",
        id="bad-ready-status",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          a: {run: "true"}
        processes:
          web:
            run: "true"
            ready: {url: "http://127.0.0.1:8000/", status: 200}
        """,
        "steps.yaml:7: processes.web.ready.url: unknown key 'url'; allowed keys: http, status",
        id="bad-ready-key",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          a: {run: "true"}
        processes:
          web:
            run: "true"
            ready: {http: "127.0.0.1:8000", status: 200}
        """,
        "steps.yaml:7: processes.web.ready.http: expected an http:// or https:// URL, got "
        "'127.0.0.1:8000'",
        id="bad-ready-url",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          a:
            run: "true"
            timeout: .nan
        """,
        "steps.yaml:5: steps.a.timeout: expected a number of seconds greater than 0, got "
        "a number (nan)",
        id="timeout-nan",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          seed:
            run: python seed.py
            python: .venv
        """,
        "steps.yaml:5: steps.seed.python: python: is for the typed kinds; a run: command "
        "starts the interpreter it names (e.g. run: .venv/bin/python seed.py)",
        id="python-on-run",
    ),
    pytest.param(
        """\
        version: 1
        steps:
          schema:
            kind: sql
            file: schema.sql
            python: .venv/bin/python
        """,
        "steps.yaml:6: steps.schema.python: kind sql runs in devenv's own interpreter, so "
        "python: would have no effect; remove it",
        id="python-on-sql",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_error_message(tmp_path: Path, text: str, expected: str) -> None:
    from devenv.errors import did_you_mean
    from devenv.kinds import KINDS

    kinds = ", ".join(k for k in KINDS if k != "shell")
    hint = did_you_mean("djngo-migrate", KINDS) or "; one of: " + ", ".join(KINDS)
    assert error(tmp_path, text) == expected.format(kinds=kinds, kind_hint=hint)


def test_error_in_a_service_file_names_that_file(tmp_path: Path) -> None:
    msg = error(tmp_path, """\
        version: 1
        steps:
          a: {run: "true"}
        """, {"postgres": "image: postgres:15\nport: ['5432']\n"})
    assert msg == "services/postgres.yaml:2: services.postgres.port: unknown key 'port' " \
                  "(did you mean 'ports'?)"


def test_service_defined_twice(tmp_path: Path) -> None:
    msg = error(tmp_path, """\
        version: 1
        services:
          postgres: {image: postgres:15}
        steps:
          a: {run: "true"}
        """, {"postgres": "image: postgres:15\n"})
    assert msg == "services/postgres.yaml:1: service 'postgres' is defined twice: here and in " \
                  "steps.yaml:3"


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "steps.yaml").write_bytes(b"version: 1\nsteps:\n  a: {run: \"\xff\"}\n")
    with pytest.raises(ConfigError) as info:
        loader.load(tmp_path / "steps.yaml")
    assert str(info.value) == "steps.yaml:3: not valid UTF-8 text"


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    text = "version: 1\nsteps: {}\nextra:\n" + "\n".join("  " + line for line in lines) + "\n"
    msg = error(tmp_path, text)
    assert "too large: more than 100000 values (aliases included)" in msg


def test_exit_code_of_config_errors_is_2(tmp_path: Path) -> None:
    assert ConfigError("x").exit_code == 2


def test_processes_may_need_processes_but_not_in_a_cycle(tmp_path: Path) -> None:
    project = load(tmp_path, """\
        version: 1
        steps:
          a: {run: "true"}
        processes:
          api: {run: "true", needs: [a]}
          web: {run: "true", needs: [api]}
        """)
    assert project.processes["web"].needs == ("api",)  # type: ignore[attr-defined]
    msg = error(tmp_path, """\
        version: 1
        steps:
          a: {run: "true"}
        processes:
          api: {run: "true", needs: [web]}
          web: {run: "true", needs: [api]}
        """)
    assert msg == "steps.yaml:5: processes.api.needs: dependency cycle: api -> web -> api"


def _venv(folder: Path) -> Path:
    """A virtualenv-shaped folder whose bin/python is a real interpreter (this one)."""
    import os
    import sys

    (folder / "bin").mkdir(parents=True)
    os.symlink(sys.executable, folder / "bin" / "python")
    return folder / "bin" / "python"


PYTHON_STEP = """\
version: 1
steps:
  migrate:
    kind: alembic
    cwd: api
    python: {python}
"""


@pytest.mark.parametrize("python", [".venv", "./.venv", ".venv/bin/python", "${HERE}/.venv"])
def test_python_is_relative_to_the_steps_cwd(tmp_path: Path, python: str) -> None:
    import os

    from devenv import runner

    (tmp_path / "steps.yaml").write_text(PYTHON_STEP.format(python=python))
    expected = _venv(tmp_path / "api" / ".venv")
    project = loader.load(tmp_path / "steps.yaml")
    env = {"PATH": os.environ["PATH"], "HERE": str(tmp_path / "api")}
    assert runner.resolve_python(project, project.steps["migrate"], env) == str(expected)


def test_python_missing_in_cwd_is_a_config_error_at_load(tmp_path: Path) -> None:
    # the venv beside steps.yaml does not count: python: is relative to cwd: (api)
    _venv(tmp_path / ".venv")
    (tmp_path / "api").mkdir()
    (tmp_path / "steps.yaml").write_text(PYTHON_STEP.format(python=".venv"))
    with pytest.raises(ConfigError) as err:
        loader.load(tmp_path / "steps.yaml")
    assert str(err.value) == (
        "steps.yaml:6: steps.migrate.python: .venv is not an interpreter or a virtualenv in "
        "api/ (the step's cwd) nor on PATH; python: is relative to the step's cwd: (create "
        "the virtualenv, e.g. python3 -m venv .venv, or fix the path)")


def test_python_bare_name_not_in_cwd_is_looked_up_on_path(tmp_path: Path) -> None:
    import shutil

    from devenv import runner

    (tmp_path / "api").mkdir()
    (tmp_path / "steps.yaml").write_text(PYTHON_STEP.format(python="python3"))
    project = loader.load(tmp_path / "steps.yaml")
    assert runner.resolve_python(project, project.steps["migrate"], {"PATH": "/usr/bin"}) \
        == shutil.which("python3", path="/usr/bin")


def test_python_with_a_variable_is_checked_when_the_step_runs(tmp_path: Path) -> None:
    from devenv import runner

    (tmp_path / "api").mkdir()
    (tmp_path / "steps.yaml").write_text(PYTHON_STEP.format(python="${VENV}"))
    project = loader.load(tmp_path / "steps.yaml")  # not known yet: no error
    with pytest.raises(ConfigError) as err:
        runner.resolve_python(project, project.steps["migrate"], {"VENV": "nowhere/venv"})
    assert str(err.value).startswith("steps.yaml:6: steps.migrate.python: nowhere/venv is not "
                                     "an interpreter or a virtualenv in api/ (the step's cwd);")


def test_a_process_build_is_read_as_a_services(tmp_path: Path) -> None:
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    (tmp_path / "worker" / "Other.dockerfile").write_text("FROM debian:bookworm-slim\n")
    project = load(tmp_path, """\
        version: 1
        steps:
          a: {run: "true"}
        processes:
          short: {run: "true", build: worker}
          long:
            run: "true"
            build: {context: worker, dockerfile: Other.dockerfile, args: {V: "1"},
                    network: host}
        """)
    procs = project.processes  # type: ignore[attr-defined]
    assert procs["short"].build == BuildSpec(context="worker")
    assert procs["long"].build == BuildSpec(context="worker", dockerfile="Other.dockerfile",
                                            args={"V": "1"}, network="host")
    assert procs["long"].image is None


@pytest.mark.parametrize(("build", "expected"), [
    ("build: nowhere",
     "steps.yaml:6: processes.w.build: build context 'nowhere' is not a folder (relative to "
     "steps.yaml, or absolute)"),
    ("build: {context: worker, dockerfile: Nope}",
     "steps.yaml:6: processes.w.build.dockerfile: no Nope in worker/ (dockerfile: is "
     "relative to the context)"),
    ("build: {context: worker, netwrok: host}",
     "steps.yaml:6: processes.w.build.netwrok: unknown key 'netwrok' (did you mean 'network'?)"),
    ("build: [worker]",
     "steps.yaml:6: processes.w.build: expected a folder (the build context) or a mapping"),
    ("build: {dockerfile: Dockerfile}",
     "steps.yaml:6: processes.w.build: missing 'context' (the folder sent to the build)"),
    ("build: worker\n    image: debian:bookworm-slim",
     "steps.yaml:7: processes.w.image: a process takes image: or build:, not both"),
])
def test_a_bad_process_build_is_named_at_its_line(tmp_path: Path, build: str,
                                                  expected: str) -> None:
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    msg = error(tmp_path, "version: 1\nsteps:\n  a: {run: \"true\"}\nprocesses:\n  w:\n"
                          f"    {build}\n    run: \"true\"\n")
    assert msg.startswith(expected), msg
