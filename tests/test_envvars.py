"""``${NAME}`` expansion keeps a value data: run through a real ``/bin/sh``, a hostile
value (``$(...)``, backticks, quotes, line breaks) is printed as it is and runs nothing,
in steps, processes and ready checks; and the masking of what devenv shows."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devenv import building, loader, processes
from devenv.console import ProcessLines
from devenv.envvars import expand, expand_command, mask, shell_command
from devenv.errors import ConfigError
from devenv.events import RecordingReporter, Status, StepStarted
from devenv.schema import Location, Project
from devenv.session import Session

MakeProject = Callable[..., Path]

# Each would create the file `pwned` (in the shell's folder) if a shell parsed it.
HOSTILE = [
    "main$(touch pwned)",
    "main`touch pwned`",
    "x'; touch pwned; echo '",
    'x"; touch pwned; echo "',
    "x\ntouch pwned",
    "a  b * $HOME ${HOME} \\ ;|&",
]


def sh(text: str, env: dict[str, str], cwd: Path) -> str:
    """``text`` as devenv runs it: rewritten, then ``/bin/sh -c`` in ``env``."""
    command = shell_command(text, env)
    done = subprocess.run(["/bin/sh", "-c", command], cwd=cwd, env={"PATH": "/usr/bin:/bin",
                          **env}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (command, done.stderr)
    assert not (cwd / "pwned").exists(), f"a value ran as code: {command!r}"
    return done.stdout


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize(("template", "expected"), [
    ("printf '%s\\n' ${V}", "{v}\n"),  # unquoted: one word, whatever it holds
    ("printf '%s\\n' \"[${V}]\"", "[{v}]\n"),  # inside double quotes
    ("printf '%s\\n' '[${V}]'", "[{v}]\n"),  # inside single quotes: still the value
    ("printf '%s\\n' \"$(printf '%s' ${V})\"", "{v}\n"),  # inside $(...)
    ("X=`printf '%s' ${V}`; printf '%s\\n' \"$X\"", "{v}\n"),  # inside backticks
    ("cat <<EOF\n[${V}] \"q\" 'q'\nEOF", "[{v}] \"q\" 'q'\n"),  # an unquoted here-document
    ("# it's a comment\nprintf '%s\\n' ${V}", "{v}\n"),  # an apostrophe in a comment
    ("printf '%s\\n' \\${V}", "{v}\n"),  # after a backslash (devenv has always expanded)
])
def test_a_value_is_data_wherever_it_stands(template: str, expected: str, value: str,
                                             tmp_path: Path) -> None:
    assert sh(template, {"V": value}, tmp_path) == expected.format(v=value)


def test_the_issue_reproduction(tmp_path: Path) -> None:
    out = sh("echo value is ${BRANCH}", {"BRANCH": "main$(touch pwned)"}, tmp_path)
    assert out == "value is main$(touch pwned)\n"


def test_a_quoted_here_document_gets_the_value_as_text(tmp_path: Path) -> None:
    text = "cat <<'EOF'\n${V}\nEOF\necho after"
    assert sh(text, {"V": "$(touch pwned) `touch pwned`"}, tmp_path) == \
        "$(touch pwned) `touch pwned`\nafter\n"
    # A line break could end the here-document early and run what follows: refused.
    with pytest.raises(ConfigError, match="quoted here-document"):
        shell_command(text, {"V": "x\nEOF\ntouch pwned"})


def test_arithmetic_and_defaults(tmp_path: Path) -> None:
    assert sh("echo $(( ${N} + 1 ))", {"N": "41"}, tmp_path) == "42\n"
    # ${NAME:-default}: the default when NAME is not set, as written (the author's text)
    assert sh("echo ${NOPE:-fall back} \"${NOPE:-x}\"", {}, tmp_path) == "fall back x\n"
    assert sh("printf '[%s]' ${SET:-d} ${EMPTY:-d}", {"SET": "a b", "EMPTY": ""},
              tmp_path) == "[a b][]"
    # $${ is left to the shell, which expands (and splits) it itself
    assert sh("printf '[%s]' $${V}", {"V": "a b"}, tmp_path) == "[a][b]"


def test_values_stay_out_of_the_command_line() -> None:
    text = shell_command("psql ${DATABASE_URL} -c 'select ${N}'",
                         {"DATABASE_URL": "postgresql://u:pw@h/db", "N": "1"})
    assert text == "psql \"${DATABASE_URL}\" -c 'select '\"${N}\"''"
    # an argv list has no shell: each value is its own argument, pasted
    assert expand_command(("echo", "${N}$(x)"), {"N": "$(touch pwned)"}) == \
        ("echo", "$(touch pwned)$(x)")
    # outside run: (cwd, options, env values) a value is pasted as text
    assert expand("${A}/x", {"A": "`y`"}) == "`y`/x"


def test_undefined_keeps_its_location() -> None:
    with pytest.raises(ConfigError) as info:
        shell_command("echo '${NOPE}'", {}, Location("steps.yaml", 7), "steps.s.run")
    assert str(info.value).startswith("steps.yaml:7: steps.s.run: ${NOPE} is not defined")


def test_mask() -> None:
    env = {"PGPASSWORD": "s3cr/t pw", "JWT_SECRET": "jwt-value", "GITHUB_TOKEN": "tok123",
           "SHORT_TOKEN": "ab", "PATH": "/bin"}
    assert mask("psql postgresql://me:other@h:5/db", env) == "psql postgresql://me:***@h:5/db"
    assert mask("x s3cr/t pw y s3cr%2Ft%20pw jwt-value tok123 ab /bin", env) == \
        "x *** y *** *** *** ab /bin"
    assert mask("redis://h:6379/0 http://user@h/") == "redis://h:6379/0 http://user@h/"
    # a value on its own is masked, not inside a longer word
    assert mask("psql -U postgres postgresql://h/db", {"PGPASSWORD": "postgres"}) == \
        "psql -U *** postgresql://h/db"
    # ... nor inside a path: the folder named like the password stays readable
    pw = {"PGPASSWORD": "devenv"}
    assert mask("python /repo/devenv/kinds/_alembic.py .devenv/logs devenv.py", pw) == \
        "python /repo/devenv/kinds/_alembic.py .devenv/logs devenv.py"
    assert mask("PGPASSWORD=devenv psql -W devenv, 'devenv' \"devenv\" devenv.", pw) == \
        "PGPASSWORD=*** psql -W ***, '***' \"***\" ***."


# --------------------------------------------------------------------------- end to end


def test_steps_run_values_as_data(make_project: MakeProject,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRANCH", "main$(touch pwned)")
    root = make_project({"version": 1,
                         "env": {"GREETING": "hi `touch pwned` there",
                                 "BOTH": "${BRANCH}|${GREETING}"},
                         "steps": {"show": {
                             "run": "echo value is ${BRANCH}\necho \"greeting: ${GREETING}\"\n"
                                    "echo 'both: ${BOTH}'; echo \"env: $BOTH\"\n"
                                    "echo ${UNSET:-default}",
                         }}})
    project = loader.load(root / "steps.yaml")
    built = building.build(Session(project, RecordingReporter()), None)
    assert [r.status for r in built.result.results] == [Status.OK]
    assert not (root / "pwned").exists()
    log = (root / ".devenv/logs/show.log").read_text().splitlines()
    assert log[0] == ('$ echo value is "${BRANCH}"')
    assert log[-5:] == ["value is main$(touch pwned)", "greeting: hi `touch pwned` there",
                        "both: main$(touch pwned)|hi `touch pwned` there",
                        "env: main$(touch pwned)|hi `touch pwned` there", "default"]


@pytest.fixture
def stop_after() -> Iterator[list[Project]]:
    made: list[Project] = []
    yield made
    for p in made:
        processes.stop_all(p, grace=1)


def test_processes_and_ready_checks_run_values_as_data(
        make_project: MakeProject, monkeypatch: pytest.MonkeyPatch,
        stop_after: list[Project]) -> None:
    monkeypatch.setenv("BRANCH", "main$(touch pwned)`touch pwned`")
    root = make_project({"version": 1, "steps": {"noop": {"run": "true"}}, "processes": {
        "web": {"run": "echo serving ${BRANCH} > served.txt; exec sleep 30",
                "ready": "cmd: test -f served.txt && printf '%s' ${BRANCH} > ready.txt",
                "ready_timeout": 60},
    }})
    project = loader.load(root / "steps.yaml")
    stop_after.append(project)
    prepared = processes.prepare(project, ["web"], None)
    assert prepared[0].shown == 'echo serving "${BRANCH}" > served.txt; exec sleep 30'
    code = processes.run_detached(project, prepared, ProcessLines(["web"], stream=io.StringIO()))
    assert code == 0
    assert (root / "served.txt").read_text() == "serving main$(touch pwned)`touch pwned`\n"
    assert (root / "ready.txt").read_text() == "main$(touch pwned)`touch pwned`"
    assert not (root / "pwned").exists()
    # The command names BRANCH instead of holding it: a new value still restarts it.
    monkeypatch.setenv("BRANCH", "other")
    buf = io.StringIO()
    code = processes.run_detached(project, processes.prepare(project, ["web"], None),
                                  ProcessLines(["web"], stream=buf))
    assert code == 0 and "its environment (BRANCH)" in buf.getvalue()
    assert (root / "served.txt").read_text() == "serving other\n"


def test_started_line_and_log_header_mask_secrets(make_project: MakeProject) -> None:
    # An argv list has no shell to resolve a reference: the value is in the argument.
    # What devenv shows and writes of the command masks it (and any URL's password).
    root = make_project({"version": 1, "env": {"API_TOKEN": "tok-s3cret-value"},
                         "steps": {"show": {"run": [
                             "echo", "${API_TOKEN}", "postgresql://me:pw-inline@h/db"]}}})
    rep = RecordingReporter()
    built = building.build(Session(loader.load(root / "steps.yaml"), rep), None)
    assert built.result.ok
    shown = "echo *** postgresql://me:***@h/db"
    assert [e.command for e in rep.events if isinstance(e, StepStarted)] == [shown]
    assert (root / ".devenv/logs/show.log").read_text().splitlines()[0] == f"$ {shown}"
