"""The command line: parses arguments with typer and calls ``devenv.commands``.

Kept thin and light: commands and their heavy imports load only when a command runs, so
``devenv --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer

from devenv import __version__

if TYPE_CHECKING:
    from devenv.console import Output
    from devenv.events import Reporter
    from devenv.schema import Project
    from devenv.session import Session

EPILOG = (
    "Exit codes: 0 ready, 1 a step failed, 2 configuration or usage error, "
    "3 a service never became healthy, 4 busy (another devenv holds the project), "
    "5 a snapshot file was refused, 6 up would re-run a changed data step on top (up.rebuild: "
    "stop), 130 interrupted."
)

app = typer.Typer(
    name="devenv",
    help=(
        "Bring up a developer environment from a declared graph: services in containers, "
        "a database built by steps that run in dependency order (in parallel where they "
        "can, skipped when nothing they depend on changed), then the app processes.\n\n"
        "Configuration: steps.yaml at the project root (found from any sub-folder) and "
        "services/NAME.yaml."
    ),
    epilog=EPILOG,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Globals:
    file: Optional[Path] = None  # noqa: UP045 - typer reads these annotations
    plain: bool = False
    gc_held: bool = False  # main() stopped the collector for start-up (_imports_done)
    # the click command of every command, built by the preloaded server once (prebuild)
    command: Any = None


G = Globals()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"devenv {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    file: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--file", "-f", help="steps.yaml to use (default: the nearest one upwards).",
        envvar="DEVENV_FILE")] = None,
    plain: Annotated[bool, typer.Option(
        "--plain", help="Plain timestamped lines instead of the live view (also when "
        "output is not a terminal, under CI, or with NO_COLOR set).")] = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    G.file = file
    import os

    G.plain = plain or bool(os.environ.get("NO_COLOR"))


def _imports_done() -> None:
    """The command's modules are imported: let the collector run again (:func:`main`
    stopped it), without walking the few hundred thousand objects the imports made, which
    live as long as the process (``gc.freeze``, as long-lived servers do after start-up).
    Only in the console script's process: a test calling the app in-process keeps its
    collector as it is."""
    if G.gc_held:
        G.gc_held = False
        gc.freeze()
        gc.enable()


def _call(fn: Callable[..., int], *args: Any, **kwargs: Any) -> None:
    """Run a command function; turn user errors into messages and exit codes."""
    from devenv.console import Output
    from devenv.errors import EXIT_FAILED, EXIT_INTERRUPTED, DevenvError

    _imports_done()
    try:
        code = fn(*args, **kwargs)
    except DevenvError as exc:
        Output(plain=G.plain).error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except (typer.Exit, SystemExit):
        raise
    except OSError as exc:
        import errno

        where = f" ({exc.filename})" if exc.filename else ""
        # devenv's own files (state, logs) on a full disk, or not devenv's to write (a
        # .devenv/ left by `sudo devenv ...`): the user's to fix, not a bug
        if exc.errno == errno.ENOSPC:
            Output(plain=G.plain).error(f"no space left on the device{where}: free some "
                                        "space (`devenv snapshot gc`, `docker system "
                                        "prune`) and run the command again; the working "
                                        "database is unchanged")
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            Output(plain=G.plain).error(f"cannot write{where}: {exc.strerror}; make the "
                                        "project's .devenv/ yours again (e.g. `sudo chown -R "
                                        "$USER .devenv` after a `sudo devenv ...`) and run "
                                        "the command again")
        else:
            _crash(exc)
        raise typer.Exit(EXIT_FAILED) from None
    except Exception as exc:
        _crash(exc)
    raise typer.Exit(code)


def _crash(exc: BaseException) -> NoReturn:
    """An exception devenv did not expect is a bug in devenv: one line for the user, the
    traceback in a file whose path is printed (as pre-commit does), a distinct exit code."""
    import tempfile
    import time
    import traceback

    from devenv.envvars import mask
    from devenv.errors import EXIT_BUG

    # argv and messages can hold a --database-url with its password
    text = mask("".join(traceback.format_exception(exc)), os.environ)
    folder = Path(tempfile.gettempdir())
    with contextlib.suppress(Exception):
        root = _project_root()
        if root is not None and (root / ".devenv").is_dir():
            folder = root / ".devenv" / "logs"
            folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"devenv-crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(mask(f"devenv {sys.argv[1:]!r}", os.environ) + f"\n{text}")
        where = f"the traceback is in {log}"
    except OSError:
        where = "the traceback could not be written: " + text.strip().splitlines()[-1]
    first = mask(str(exc).splitlines()[0], os.environ) if str(exc) else ""
    sys.stderr.write(f"error: devenv failed unexpectedly ({type(exc).__name__}: {first}); "
                     f"this is a bug in devenv, please report it; {where}\n")
    raise typer.Exit(EXIT_BUG)


def _project_root() -> Path | None:
    from devenv import loader

    with contextlib.suppress(Exception):
        return loader.find_config(file=G.file).parent
    return None


def _project(runs_steps: bool = True) -> Project:
    """The project; ``runs_steps`` False for a command that runs none (see loader.load)."""
    from devenv import loader

    return loader.load(G.file, check_python=runs_steps)


def _output() -> Output:
    from devenv.console import Output

    return Output(plain=G.plain)


def _reporter(**kwargs: Any) -> Reporter:
    from devenv.console import make_reporter

    return make_reporter(plain=G.plain, **kwargs)


def _with_session(fn: Callable[..., int], *, profile: str = "local",
                  database_url: str | None = None, runs_steps: bool = True,
                  **kwargs: Any) -> Callable[..., int]:
    """``fn(session, ...)`` with this command's session: the project loaded, a reporter
    (closed afterwards), the profile and where the database lives, resolved once."""
    from devenv.session import Session

    def call(*args: Any, **kw: Any) -> int:
        project = _project(runs_steps)
        reporter = _reporter(**kwargs)
        try:
            return fn(Session(project, reporter, profile, database_url), *args, **kw)
        finally:
            reporter.close()

    return call


def _quiet_session(profile: str = "local", database_url: str | None = None,
                   runs_steps: bool = False) -> Session:
    """The session of a command that prints its own output (status, plan, lists): its
    reporter only says, on stderr, what it waits for."""
    from devenv.console import PlainReporter
    from devenv.session import Session

    return Session(_project(runs_steps), PlainReporter(sys.stderr), profile, database_url)


def _with_reporter(fn: Callable[..., int], **kwargs: Any) -> Callable[..., int]:
    def call(*args: Any, **kw: Any) -> int:
        reporter = _reporter(**kwargs)
        try:
            return fn(args[0], reporter, *args[1:], **kw)
        finally:
            reporter.close()

    return call


StepsArg = Annotated[Optional[list[str]], typer.Argument(  # noqa: UP045
    help="Steps to act on (with what they need). Default: every step.", show_default=False)]
ProfileOpt = Annotated[str, typer.Option(
    "--profile", "-p", help="Profile: steps marked for other profiles are skipped.")]
JobsOpt = Annotated[Optional[int], typer.Option(  # noqa: UP045
    "--jobs", "-j", min=1, help="Steps run at once (default: number of CPUs).")]
DbUrlOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--database-url", envvar=None, help="Use this PostgreSQL instead of starting the "
    "database service (DATABASE_URL in the environment does the same).")]
CacheRemoteOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--cache-remote", help="Remote snapshot cache to use (oci://REGISTRY/REPOSITORY; "
    "overrides cache.remote and DEVENV_CACHE_REMOTE).", show_default=False)]
NoRemoteCacheOpt = Annotated[bool, typer.Option(
    "--no-remote-cache", help="Do not use the remote snapshot cache.")]


def _remote_env(cache_remote: str | None, no_remote_cache: bool) -> None:
    """The flags reach devenv.workingdb.oci as DEVENV_CACHE_REMOTE (and the background
    push it may start), like the variable set by hand."""
    import os

    if no_remote_cache:
        os.environ["DEVENV_CACHE_REMOTE"] = "off"
    elif cache_remote:
        os.environ["DEVENV_CACHE_REMOTE"] = cache_remote


@app.command()
def graph(
    fmt: Annotated[str, typer.Option(
        "--format", help="tree, mermaid, dot or json.")] = "tree",
) -> None:
    """Show the step graph: services, steps and processes with what each needs.

    Example: devenv graph --format mermaid > graph.md
    """
    from devenv.commands import graph as cmd

    _call(lambda: cmd.run(_project(runs_steps=False), _output(), fmt))


@app.command()
def plan(
    steps: StepsArg = None,
    only: Annotated[bool, typer.Option("--only", help="Only the named steps, not what "
                                       "they need.")] = False,
    force: Annotated[bool, typer.Option("--force", help="As if the named steps had "
                                        "changed.")] = False,
    profile: ProfileOpt = "local",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="Plan a `refresh-db` instead: "
                                          "which snapshot it starts from, which steps "
                                          "run.")] = False,
    database_url: DbUrlOpt = None,
) -> None:
    """Show what `devenv run`/`up` would run, what it would skip, and why.

    Nothing is started or changed. Reasons name what changed: an input file, the step's
    definition, an upstream step, or "never run on this database".
    """
    from devenv.commands import plan as cmd

    _call(lambda: cmd.run(_quiet_session(profile=profile, database_url=database_url,
                                         runs_steps=True), _output(),
                          steps or [], only=only, force=force, as_json=as_json,
                          refresh=refresh))


@app.command("run")
def run_cmd(
    steps: StepsArg = None,
    only: Annotated[bool, typer.Option("--only", help="Run only the named steps, not what "
                                       "they need.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Run the named steps even if "
                                        "unchanged.")] = False,
    profile: ProfileOpt = "local",
    jobs: JobsOpt = None,
    keep_going: Annotated[bool, typer.Option("--keep-going", "-k", help="After a failure, "
                                             "go on with steps that do not need it.")] = False,
    database_url: DbUrlOpt = None,
) -> None:
    """Run steps (and the steps they need) against the project database.

    Services the steps need are started first. Steps whose fingerprint (definition,
    inputs, upstream) is unchanged since their last success on this database are skipped.
    Each step's output goes to .devenv/logs/STEP.log.

    Example: devenv run django-fixtures --force
    """
    from devenv.commands import run as cmd

    _call(lambda: _with_session(cmd.run, profile=profile, database_url=database_url)(
        steps or [], only=only, force=force, jobs=jobs,
        keep_going=keep_going))


@app.command()
def up(
    detach: Annotated[bool, typer.Option(
        "--detach", "-d", help="Run the processes in the background (output in "
        ".devenv/logs/NAME.log) and return once all are ready; `devenv down` stops them.")
    ] = False,
    profile: ProfileOpt = "local",
    jobs: JobsOpt = None,
    database_url: DbUrlOpt = None,
    no_processes: Annotated[bool, typer.Option(
        "--no-processes", help="Stop after the steps: start no app process.")] = False,
    rebuild: Annotated[Optional[bool], typer.Option(  # noqa: UP045
        "--rebuild/--no-rebuild", help="When a step that is not incremental (fixtures, fake "
        "data) changed on a database it already ran on: build the new state beside the "
        "working database and swap it in (--rebuild), or stop and say so (--no-rebuild). "
        "Default: steps.yaml's up.rebuild (rebuild).", show_default=False)] = None,
    cache_remote: CacheRemoteOpt = None,
    no_remote_cache: NoRemoteCacheOpt = False,
) -> None:
    """Start the services, build the database (only steps that changed run), then start
    the app processes and wait until each is ready.

    Migrations run on top of the working database. A changed data step is never run on
    top of the data it already made: the new state is built beside it and swapped in, the
    old database kept as NAME__prev (`devenv refresh-db --undo` brings it back).

    In the foreground, the processes' output is shown line by line, prefixed with their
    name; Ctrl-C stops them (the services keep running) and exits 130. A process that
    exits on its own stops the others and exits 1.

    Example: devenv up --detach
    """
    from devenv.commands import up as cmd

    _remote_env(cache_remote, no_remote_cache)
    _call(lambda: _with_session(cmd.run, profile=profile, database_url=database_url)(
        detach=detach, jobs=jobs,
        no_processes=no_processes, plain=G.plain,
        rebuild=None if rebuild is None else ("rebuild" if rebuild else "stop")))


@app.command("refresh-db")
def refresh_db(
    profile: ProfileOpt = "local",
    jobs: JobsOpt = None,
    keep_failed: Annotated[bool, typer.Option(
        "--keep-failed", help="Keep a failed build (NAME__b_<run>, named in the output) for inspection.")] = False,
    no_backup: Annotated[bool, typer.Option(
        "--no-backup", help="Drop the replaced database instead of keeping it as "
        "NAME__prev.")] = False,
    no_cache: Annotated[bool, typer.Option(
        "--no-cache", help="Ignore snapshots: run every step from an empty database.")] = False,
    undo: Annotated[bool, typer.Option(
        "--undo", help="Swap the previous database (NAME__prev) back in.")] = False,
    no_wait: Annotated[bool, typer.Option(
        "--no-wait", help="Fail at once if another devenv holds the project.")] = False,
    database_url: DbUrlOpt = None,
    cache_remote: CacheRemoteOpt = None,
    no_remote_cache: NoRemoteCacheOpt = False,
) -> None:
    """Build a fresh database beside the working one; swap it in only if every step passed.

    Starts from the deepest snapshot whose steps are unchanged (nothing changed: a rename,
    no step runs). A failing step, Ctrl-C or a crash leaves the working database as it was.
    The replaced database is kept as NAME__prev until the next refresh.
    """
    from devenv.commands import refresh_db as cmd

    _remote_env(cache_remote, no_remote_cache)
    _call(lambda: _with_session(cmd.run, profile=profile, database_url=database_url)(
        jobs=jobs, keep_failed=keep_failed, no_backup=no_backup,
        no_cache=no_cache, undo=undo, wait=not no_wait))


@app.command("ci-setup")
def ci_setup(
    profile: ProfileOpt = "ci",
    junit: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--junit", help="Write a JUnit XML report: one test case per step.")] = None,
    json_path: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--json", help="Write a JSON report: steps, durations, skip reasons, "
        "fingerprints.")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--cache-dir", help="Restore a database dump whose key matches `devenv fingerprint` "
        "instead of running the steps; after a cold build, save one.")] = None,
    keep: Annotated[int, typer.Option("--keep", min=1, help="Dumps kept in --cache-dir.")] = 3,
    with_processes: Annotated[bool, typer.Option(
        "--with-processes", help="Also start the processes, in the background.")] = False,
    jobs: JobsOpt = None,
    database_url: DbUrlOpt = None,
    push: Annotated[bool, typer.Option(
        "--push", help="After a build, push the database to the remote snapshot cache "
        "(cache.remote), so developers' next up or refresh-db pulls it.")] = False,
    cache_remote: CacheRemoteOpt = None,
    no_remote_cache: NoRemoteCacheOpt = False,
) -> None:
    """What CI runs: `up` without anything interactive, with reports.

    Uses the database CI provides when DATABASE_URL is set, otherwise starts the services.
    Plain timestamped lines, each step's log in a block (folded under GitHub Actions and
    GitLab CI). Exit codes: 0 ready, 1 a step failed, 2 configuration error, 3 a service
    never became healthy, 4 busy, 130 interrupted; the last line says which.

    Example: devenv ci-setup --junit reports/devenv.xml --cache-dir .devenv-cache
    """
    from devenv.commands import ci_setup as cmd

    _imports_done()
    _remote_env(cache_remote, no_remote_cache)
    reporter = _reporter(ci_groups=True)
    try:
        code = cmd.run(_project, reporter, profile=profile, junit=junit, json_path=json_path,
                       cache_dir=cache_dir, keep=keep, with_processes=with_processes,
                       jobs=jobs, database_url=database_url, push=push)
    finally:
        reporter.close()
    raise typer.Exit(code)


@app.command()
def fingerprint(
    profile: ProfileOpt = "ci",
) -> None:
    """Print the key of the whole step graph (what a CI cache keys on).

    It changes when any step of the profile, or any of its inputs, changes.

    Example (GitHub Actions): key: devenv-${{ hashFiles('...') }} or
    run: echo "key=$(devenv fingerprint)" >> "$GITHUB_OUTPUT"
    """
    from devenv import fingerprint as fp
    from devenv import planner

    def show() -> int:
        project = _project(runs_steps=False)
        planner.check_profile(project, profile)
        typer.echo(fp.graph_key(project, profile))
        return 0

    _call(show)


snapshot_app = typer.Typer(
    name="snapshot",
    help=(
        "Named copies of the database, kept beside it on the server: save the working "
        "database, restore it (atomically, the replaced one kept as NAME__prev), list, "
        "delete, prune the cache, and move snapshots between machines as files."
    ),
    epilog=EPILOG,
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(snapshot_app, name="snapshot")

branches_app = typer.Typer(
    name="branches",
    help=(
        "Databases kept per git branch. When `devenv up` finds another branch checked out, "
        "it parks the working database (with the rows you made on it) as NAME__br_BRANCH "
        "and swaps in the checked-out branch's own (a rename), or builds it from the "
        "deepest matching snapshot. List them, drop one, prune old ones, or install a git "
        "post-checkout hook so `git switch` does it by itself."
    ),
    epilog=EPILOG,
    invoke_without_command=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(branches_app, name="branches")


@branches_app.callback()
def branches_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    no_wait: Annotated[bool, typer.Option(
        "--no-wait", help="Fail at once if another devenv holds the project.")] = False,
    database_url: DbUrlOpt = None,
) -> None:
    """List the parked branch databases: branch, database, size, last used.

    Example: devenv branches --json
    """
    if ctx.invoked_subcommand is not None:
        return
    from devenv.commands import branches as cmd

    _call(lambda: cmd.list_branches(_quiet_session(database_url=database_url), _output(),
                                                   as_json=as_json, wait=not no_wait))


@branches_app.command("drop")
def branches_drop(
    branch: Annotated[str, typer.Argument(help="The branch whose parked database to drop.",
                                          show_default=False)],
    database_url: DbUrlOpt = None,
) -> None:
    """Drop the parked database of BRANCH (the rows made on it go with it)."""
    from devenv.commands import branches as cmd

    _call(lambda: _with_session(cmd.drop, database_url=database_url,
                                        runs_steps=False)(branch))


@branches_app.command("prune")
def branches_prune(
    keep: Annotated[int, typer.Option("--keep", min=0, help="How many parked databases to "
                                      "keep (the most recently used).")] = 5,
    database_url: DbUrlOpt = None,
) -> None:
    """Drop the parked databases beyond the --keep most recently used, naming each."""
    from devenv.commands import branches as cmd

    _call(lambda: _with_session(cmd.prune, database_url=database_url,
                                        runs_steps=False)(keep))


@branches_app.command("hook")
def branches_hook(
    action: Annotated[str, typer.Argument(help="install or uninstall.", show_default=False)],
) -> None:
    """Install (or uninstall) a git post-checkout hook that runs `devenv up
    --no-processes` after a branch checkout, so the database follows `git switch`."""
    from devenv.commands import branches as cmd

    _call(lambda: _with_reporter(cmd.hook)(_project(runs_steps=False), action))


SnapNameArg = Annotated[str, typer.Argument(
    help="Snapshot name: letters, digits, -, _ and .; as long as PostgreSQL's 63-byte "
         "names allow after the database's name (the error says the limit).",
    show_default=False)]
NoWaitOpt = Annotated[bool, typer.Option(
    "--no-wait", help="Fail at once if another devenv holds the project.")]


@snapshot_app.command("save")
def snapshot_save(
    name: SnapNameArg,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Overwrite a snapshot of that name.")] = False,
    no_wait: NoWaitOpt = False,
    database_url: DbUrlOpt = None,
) -> None:
    """Save the working database as snapshot NAME (a server-side copy: seconds).

    Sessions on the working database are ended for the copy. Example: devenv snapshot save
    before_migration
    """
    from devenv.commands import snapshot as cmd

    _call(lambda: _with_session(cmd.save, database_url=database_url,
                                        runs_steps=False)(name, replace=replace,
                                                                     wait=not no_wait))


@snapshot_app.command("restore")
def snapshot_restore(
    name: SnapNameArg,
    no_backup: Annotated[bool, typer.Option(
        "--no-backup", help="Drop the replaced database instead of keeping it as "
        "NAME__prev.")] = False,
    no_wait: NoWaitOpt = False,
    database_url: DbUrlOpt = None,
) -> None:
    """Make snapshot NAME the working database (swapped in atomically; the snapshot stays).

    The replaced database is kept as NAME__prev (`devenv refresh-db --undo` swaps it back).
    """
    from devenv.commands import snapshot as cmd

    _call(lambda: _with_session(cmd.restore, database_url=database_url)(name,
                                                                        backup=not no_backup,
        wait=not no_wait))


@snapshot_app.command("list")
def snapshot_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    profile: ProfileOpt = "local",
    no_wait: NoWaitOpt = False,
    database_url: DbUrlOpt = None,
) -> None:
    """List user and cache snapshots: size, age, the steps each holds, and whether those
    steps are still defined as they are now (CURRENT)."""
    from devenv.commands import snapshot as cmd

    _call(lambda: cmd.list_snapshots(_quiet_session(profile=profile, database_url=database_url),
                                                    _output(), as_json=as_json, wait=not no_wait))


@snapshot_app.command("delete")
def snapshot_delete(
    name: SnapNameArg,
    no_wait: NoWaitOpt = False,
    database_url: DbUrlOpt = None,
) -> None:
    """Delete snapshot NAME."""
    from devenv.commands import snapshot as cmd

    _call(lambda: _with_session(cmd.delete, database_url=database_url,
                                        runs_steps=False)(name,
                                             wait=not no_wait))


@snapshot_app.command("gc")
def snapshot_gc(
    keep: Annotated[Optional[int], typer.Option(  # noqa: UP045
        "--keep", min=0, help="Cache snapshots to keep (default: cache.keep in "
        "steps.yaml).")] = None,
    profile: ProfileOpt = "local",
    no_wait: NoWaitOpt = False,
    database_url: DbUrlOpt = None,
) -> None:
    """Drop the oldest cache snapshots beyond cache.keep, and what an interrupted run left
    (NAME__b_<run> and NAME__build, incomplete snapshots). User snapshots and NAME__prev stay."""
    from devenv.commands import snapshot as cmd

    _call(lambda: _with_session(cmd.gc, profile=profile, database_url=database_url,
                                        runs_steps=False)(
        keep=keep, wait=not no_wait))


@snapshot_app.command("export")
def snapshot_export(
    name: SnapNameArg,
    file: Annotated[Path, typer.Argument(help="File to write.", show_default=False)],
    no_wait: NoWaitOpt = False,
    database_url: DbUrlOpt = None,
) -> None:
    """Write snapshot NAME to FILE (pg_dump custom format behind a header recording the
    project, its steps and their fingerprints).

    Example: devenv snapshot export seeded /tmp/seeded.devenv-snapshot
    """
    from devenv.commands import snapshot as cmd

    _call(lambda: _with_session(cmd.export, database_url=database_url,
                                        runs_steps=False)(name, file,
                                                                       wait=not no_wait))


@snapshot_app.command("import")
def snapshot_import(
    file: Annotated[Path, typer.Argument(help="A file written by `devenv snapshot export`.",
                                         show_default=False)],
    name: Annotated[Optional[str], typer.Argument(  # noqa: UP045
        help="Name to give it (default: its name when exported).", show_default=False)
    ] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Import a snapshot of another project.")] = False,
    no_wait: NoWaitOpt = False,
    database_url: DbUrlOpt = None,
) -> None:
    """Load FILE as a snapshot (checked first: complete, this project, a server version
    this one can restore); then `devenv snapshot restore NAME` makes it the working one."""
    from devenv.commands import snapshot as cmd

    _call(lambda: _with_session(cmd.import_, database_url=database_url)(file, name, force=force,
                                                                        wait=not no_wait))


@snapshot_app.command("push")
def snapshot_push(
    name: Annotated[str, typer.Argument(help="A saved snapshot, or a cache snapshot's key "
                                        "(its first 6+ characters).", show_default=False)],
    background: Annotated[bool, typer.Option(
        "--background", help="Return once the dump is written; upload in the background "
        "(.devenv/logs/push.log).")] = False,
    cache_remote: CacheRemoteOpt = None,
    no_wait: NoWaitOpt = False,
    database_url: DbUrlOpt = None,
) -> None:
    """Push snapshot NAME to the remote cache (cache.remote), tagged by the fingerprint of
    its steps: a teammate's refresh-db with the same steps pulls it instead of building."""
    from devenv.commands import snapshot_remote as cmd

    _remote_env(cache_remote, False)
    _call(lambda: _with_session(cmd.push, database_url=database_url)(name, background=background,
                                                                     wait=not no_wait))


@snapshot_app.command("pull")
def snapshot_pull(
    ref: Annotated[str, typer.Argument(help="The snapshot's fingerprint (its tag) or another "
                                       "tag.", show_default=False)],
    cache_remote: CacheRemoteOpt = None,
    no_wait: NoWaitOpt = False,
    database_url: DbUrlOpt = None,
) -> None:
    """Pull a snapshot from the remote cache into a local cache snapshot (checked and
    restored as untrusted); the next refresh-db starts from it."""
    from devenv.commands import snapshot_remote as cmd

    _remote_env(cache_remote, False)
    _call(lambda: _with_session(cmd.pull, database_url=database_url)(ref,
                                           wait=not no_wait))


@app.command()
def down(
    volumes: Annotated[bool, typer.Option(
        "--volumes", help="Also delete the services' data (containers, volumes, native "
        "data folders), after a confirmation.")] = False,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Do not ask before deleting (needed without a terminal).")
    ] = False,
) -> None:
    """Stop the app processes and the services.

    Containers are stopped, not removed: the next `devenv up` starts them again with their
    data. With --volumes everything is removed and the data deleted (it names what it
    deletes and asks first; pass --yes in scripts).

    Example: devenv down --volumes --yes
    """
    from devenv.commands import down as cmd

    _call(lambda: cmd.run(_quiet_session(), _output(), volumes=volumes, yes=yes))


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    profile: ProfileOpt = "local",
    database_url: DbUrlOpt = None,
) -> None:
    """Show the services (backend and why, state, health, address, uptime), the database
    (does it exist, would any step run) and the processes: what `devenv up` would do.

    Nothing is started or changed; passwords are never shown.
    """
    from devenv.commands import status as cmd

    _call(lambda: cmd.run(_quiet_session(profile=profile, database_url=database_url), _output(),
                                         as_json=as_json))


@app.command()
def logs(
    name: Annotated[Optional[str], typer.Argument(  # noqa: UP045
        help="A service, step or process (default: the database's service).",
        show_default=False)] = None,
    follow: Annotated[bool, typer.Option(
        "--follow", help="Keep printing new lines until Ctrl-C.")] = False,
    tail: Annotated[Optional[int], typer.Option(  # noqa: UP045
        "--tail", "-n", min=0, help="Only the last N lines.")] = None,
    ci: Annotated[bool, typer.Option(
        "--ci", help="A step's log from the last ci-setup run (.devenv/ci-logs/STEP.log).",
    )] = False,
) -> None:
    """Show a log: a service's (its container or native server), a step's last run
    (.devenv/logs/STEP.log; with --ci its last ci-setup run) or a process's
    (.devenv/logs/NAME.log).

    Example: devenv logs db --tail 50 --follow
    """
    from devenv.commands import logs as cmd

    _call(lambda: cmd.run(_project(runs_steps=False), _output(), name, follow=follow,
                          tail=tail, ci=ci))


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                               "help_option_names": ["--help"]})
def psql(
    args: Annotated[Optional[list[str]], typer.Argument(  # noqa: UP045
        help="Passed to psql as they are.", show_default=False)] = None,
    database_url: DbUrlOpt = None,
) -> None:
    """Open psql on the project database (the local psql, else inside its container).

    Example: devenv psql -c 'select count(*) from crm.customer'
    """
    from devenv.commands import psql as cmd

    _call(lambda: cmd.run(_quiet_session(database_url=database_url), args or []))


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option(
        "--json", help="Every check as JSON: id, status, finding, fix.")] = False,
    fix: Annotated[bool, typer.Option(
        "--fix", help="Apply the safe fixes (start services, create schemas, drop leftover "
        "build databases, run the steps up would run), naming each first; then check "
        "again.")] = False,
    profile: ProfileOpt = "local",
    database_url: DbUrlOpt = None,
) -> None:
    """Why is this not working? Check configuration, engine, services, database, steps,
    migrations, drift between the Flask and Django models, environment and snapshots;
    for each: ok / warn / fail, what was found and what fixes it.

    Exit code 0 when nothing fails (warnings allowed), 1 otherwise. Nothing is changed
    without --fix. Example: devenv doctor --fix
    """
    from devenv.commands import doctor as cmd

    _call(lambda: cmd.run(G.file, _output(), as_json=as_json, fix=fix, plain=G.plain,
                          profile=profile, database_url=database_url))


# --------------------------------------------------------------------------- init (H7)


@app.command("init")
def init_cmd(
    repo: Annotated[Path, typer.Argument(
        help="The repository: steps.yaml and services/ are written here.")] = Path("."),
    apps: Annotated[Optional[list[Path]], typer.Option(  # noqa: UP045
        "--app", help="Only look in this folder (repeatable; relative to REPO or here). "
        "Default: the whole repository.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Overwrite an existing steps.yaml.")] = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Print what would be written; write nothing.")] = False,
) -> None:
    """Draft steps.yaml (and services/postgres.yaml) from the apps in a repository.

    Reads files only (no app is imported) and finds: Django projects (manage.py, the
    settings module, apps with migrations, fixtures, management commands), Flask apps
    (FLASK_APP, app factories, Flask-Migrate's migrations/, click commands), plain Alembic
    (alembic.ini), a virtualenv beside each app (python:, relative to cwd:), requirements
    files, the variables each app reads its database from (DATABASE_URL, DB_HOST-style
    names: wired through env:), and a health route for each server's ready check. When
    several apps share the database each gets its own schema, unless it pins its own
    search_path. Every choice is explained in a comment in the file.

    Fixture-loading commands become steps; other commands are listed, commented out, to
    pick. The draft is checked by devenv's own loader before it is written. steps.yaml is
    never overwritten without --force; an existing services/NAME.yaml with a postgres
    image is reused. Editors get a JSON Schema in .devenv/schema/ (see devenv schema).

    Exit codes: 0 written (with --check: would be written); 1 no app found (with --check:
    also when steps.yaml is in the way); 2 steps.yaml exists and no --force.

    Example: devenv init --check; devenv init && devenv up --detach
    """
    from devenv.commands import init as cmd

    _call(lambda: cmd.run(_output(), repo, apps, force=force, check=check))


# --------------------------------------------------------------------------- schema (H7)


@app.command("schema")
def schema_cmd(
    which: Annotated[str, typer.Argument(
        help="steps (steps.yaml) or service (one services/NAME.yaml).")] = "steps",
    write: Annotated[bool, typer.Option(
        "--write", help="Write both schemas to .devenv/schema/ in the project (beside the "
        "nearest steps.yaml, or here) instead of printing one.")] = False,
) -> None:
    """Print the JSON Schema of steps.yaml or services/NAME.yaml, for editors.

    Built from the loader's own key lists and each kind's options, so it accepts exactly
    the keys devenv does. For VS Code's YAML extension (or any YAML language server), put
    this first line in steps.yaml (devenv init writes it):

        # yaml-language-server: $schema=.devenv/schema/steps.json

    and in services/NAME.yaml: # yaml-language-server: $schema=../.devenv/schema/service.json
    then run devenv schema --write to create the files. Example: devenv schema service
    """
    from devenv.commands import schema as cmd

    _call(lambda: cmd.run(_output(), which, write=write, file=G.file))


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # The runner stops its steps' process groups on KeyboardInterrupt; SIGTERM (docker
    # stop, CI cancelling a job) gets the same clean stop.
    raise KeyboardInterrupt


def main() -> None:
    """Entry point of the ``devenv`` console script."""
    # Start-up and exit are most of a daily `devenv up` that finds nothing to do: no
    # collections while the command's modules import (each would walk every object the
    # imports made so far; _imports_done turns them back on), and none at exit, where the
    # interpreter would walk them all once more only to free them with the process.
    gc.disable()
    G.gc_held = True
    signal.signal(signal.SIGTERM, _on_sigterm)
    # --plain is global, but people type it after the command too (devenv run --plain).
    argv = sys.argv[1:]
    end = argv.index("--") if "--" in argv else len(argv)
    if "--plain" in argv[:end]:
        argv = ["--plain"] + [a for i, a in enumerate(argv) if not (a == "--plain" and i < end)]
    try:
        if G.command is not None:
            G.command(args=argv, prog_name="devenv")
        else:
            _only_the_command(argv)
            app(args=argv, prog_name="devenv")
    finally:
        gc.freeze()


def prebuild() -> None:
    """Build the click command of every command now, for a process that forks one child
    per command (devenv.preload's server): each child then parses its arguments at once,
    where a cold start builds the one command it runs (see :func:`_only_the_command`)."""
    G.command = typer.main.get_command(app)


def _only_the_command(argv: list[str]) -> None:
    """Register only the command ``argv`` names (when it names one) before typer builds
    the click commands: typer reads every command's signature and evaluates its
    annotations when it builds them, about 15 ms for all of them on each start, which the
    daily ``devenv up`` paid for 25 commands it does not run. ``devenv --help``, a mistyped
    command (click's suggestions) and shell completion still see them all."""
    if any(k.startswith("_DEVENV_COMPLETE") or k == "_TYPER_COMPLETE_ARGS" for k in os.environ):
        return
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        # the global options before the command; --file/-f take a value unless joined
        i += 2 if argv[i] in ("--file", "-f") else 1
    if i >= len(argv):
        return
    name = argv[i]
    commands = [c for c in app.registered_commands
                if (c.name or typer.main.get_command_name(c.callback.__name__
                                                          if c.callback else "")) == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if commands or groups:
        app.registered_commands = commands
        app.registered_groups = groups
