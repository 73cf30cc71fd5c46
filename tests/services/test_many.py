"""Services beyond PostgreSQL, against the real engine: images built from the repository
(rebuilt only when their folder changes), each service's address handed to steps, ``needs:``
between services, ``ready:`` checks from the host, and services taken from a compose file.

The images are built FROM the local debian:bookworm-slim (../shared/images/
build-debian-base) with a tiny HTTP server in Perl, which the base already has: no package
download, so a build takes a second.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from devenv import building, loader
from devenv.errors import EXIT_SERVICE, ServiceError
from devenv.events import Event, PhaseFinished, PhaseStarted
from devenv.schema import Project
from devenv.services import docker as dockerlib
from devenv.services.docker import DockerBackend, built_tag, container_name
from devenv.session import Session
from tests.services.conftest import purge, unique_name

pytestmark = pytest.mark.docker

BASE = "debian:bookworm-slim"

SERVER = r"""use IO::Socket::INET;
$| = 1;
$SIG{TERM} = sub { exit 0 };  # PID 1 has no default action for SIGTERM
my $delay = $ENV{DELAY} || 0;
print "starting; listening in ${delay}s\n";
select(undef, undef, undef, $delay);
my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 5, ReuseAddr => 1,
                              Proto => 'tcp') or die "listen: $!";
print "listening on 8080\n";
while (my $c = $s->accept) {
  my $first = <$c>;
  while (my $l = <$c>) { last if $l =~ /^\r?\n$/; }
  my $body = ($ENV{MESSAGE} || "hello") . "\n";
  print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
    . length($body) . "\r\n\r\n$body";
  close $c;
}
"""

DOCKERFILE = f"""FROM {BASE}
COPY server.pl /server.pl
CMD ["perl", "/server.pl"]
"""


@pytest.fixture(scope="module", autouse=True)
def base_image() -> None:
    client = docker.from_env()
    try:
        client.images.get(BASE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{BASE} is not here: run ../shared/images/build-debian-base once")
    finally:
        client.close()


class Recorder:
    """Every event with the wall-clock time it came (thread-safe enough: list.append)."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Event]] = []

    def emit(self, event: Event) -> None:
        self.events.append((time.time(), event))

    def close(self) -> None:
        return None

    def when(self, kind: type, name: str) -> float:
        return next(t for t, e in self.events if isinstance(e, kind) and e.name == name)

    def names(self, kind: type) -> list[str]:
        return [e.name for _, e in self.events if isinstance(e, kind)]


def write_app(root: Path) -> None:
    (root / "web").mkdir(parents=True, exist_ok=True)
    (root / "web" / "server.pl").write_text(SERVER)
    (root / "web" / "Dockerfile").write_text(DOCKERFILE)


def web(**over: Any) -> dict[str, Any]:
    svc: dict[str, Any] = {"build": {"context": "web", "network": "host"},
                           "ports": ["8080"], "ready": {"http": "/"}}
    svc.update(over)
    return svc


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Callable[..., Project]]:
    """``make(services, steps=None)``: a project (no database) with the web app's folder;
    its containers, volumes and built images are removed afterwards."""
    name = unique_name()
    root = tmp_path / "proj"
    write_app(root)

    def make(services: dict[str, Any], steps: dict[str, Any] | None = None) -> Project:
        config = {"version": 1, "name": name, "services": services,
                  "steps": steps or {"noop": {"run": "true"}}}
        (root / "steps.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        return loader.load(root / "steps.yaml")

    try:
        yield make
    finally:
        purge(name)
        client = docker.from_env()
        try:
            for image in client.images.list(filters={"label": f"devenv.project={name}"}):
                for tag in image.tags:
                    client.images.remove(tag, force=True)
        finally:
            client.close()


def test_a_built_image_is_rebuilt_only_when_its_folder_changes(
        project: Callable[..., Project]) -> None:
    p = project({"web": web()})
    svc = p.services["web"]
    first = Recorder()
    ep = Session(p, first).start(["web"])["web"]
    tag = built_tag(p, svc)
    assert "build-web" in first.names(PhaseStarted)
    log = p.state_dir / "logs" / "build-web.log"
    assert "Successfully tagged" in log.read_text() or tag in log.read_text()
    assert ep.port(8080) != 8080

    again = Recorder()
    Session(p, again).start(["web"])
    assert "build-web" not in again.names(PhaseStarted)  # same content: no build
    assert built_tag(p, svc) == tag

    server = p.root / "web" / "server.pl"
    server.write_text(server.read_text().replace('"hello"', '"changed"'))
    changed = Recorder()
    ep = Session(p, changed).start(["web"])["web"]
    assert "build-web" in changed.names(PhaseStarted)
    assert built_tag(p, svc) != tag
    client = docker.from_env()
    try:  # the earlier build is removed once nothing runs it
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(tag)
    finally:
        client.close()
    # the container runs the new image (recreated because its image changed)
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{ep.port(8080)}/", timeout=5) as r:
        assert r.read() == b"changed\n"


def test_a_failed_build_shows_the_tail_of_its_log(project: Callable[..., Project]) -> None:
    p = project({"web": web()})
    (p.root / "web" / "Dockerfile").write_text(
        f"FROM {BASE}\nRUN echo about to fail && exit 7\n")
    with pytest.raises(ServiceError) as info:
        Session(p, Recorder()).start(["web"])
    text = str(info.value)
    assert "service web: the image build failed" in text
    assert ".devenv/logs/build-web.log" in text
    assert "about to fail" in text


def test_a_service_address_reaches_a_step_through_its_variables(
        project: Callable[..., Project]) -> None:
    """A step asks the service over WEB_URL (from url:) and over ${WEB_HOST}:${WEB_PORT}
    in its env:, through the real CLI."""
    fetch = ("import os, urllib.request, json\n"
             "body = urllib.request.urlopen(os.environ['WEB_URL'], timeout=5).read()\n"
             "again = urllib.request.urlopen(os.environ['ADDR'], timeout=5).read()\n"
             "json.dump({'url': os.environ['WEB_URL'], 'port': os.environ['WEB_PORT'],\n"
             "           'body': body.decode(), 'again': again.decode()},\n"
             "          open('out.json', 'w'))\n")
    p = project({"web": web(url="http://${host}:${port}/", env={"MESSAGE": "from web"})},
                steps={"fetch": {"run": [sys.executable, "-c", fetch], "needs": ["web"],
                                 "env": {"ADDR": "http://${WEB_HOST}:${WEB_PORT}/"}}})
    done = subprocess.run([sys.executable, "-m", "devenv", "--plain", "-f",
                           str(p.file), "run"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads((p.root / "out.json").read_text())
    port = DockerBackend().endpoint(p, p.services["web"])
    assert port is not None
    assert out == {"url": f"http://127.0.0.1:{port.port(8080)}/",
                   "port": str(port.port(8080)), "body": "from web\n", "again": "from web\n"}
    env = building.step_environment(p, None, None)
    assert env["WEB_HOST"] == "127.0.0.1" and env["WEB_URL"] == out["url"]


def test_a_service_starts_after_the_services_it_needs_are_ready(
        project: Callable[..., Project]) -> None:
    """b needs a (which takes 2 s to listen); c needs nothing and starts beside a."""
    p = project({"a": web(env={"DELAY": "2"}), "b": web(needs=["a"]), "c": web()})
    rec = Recorder()
    Session(p, rec).start(["b", "c"])
    a_ready = rec.when(PhaseFinished, "a")
    assert rec.when(PhaseStarted, "b") >= a_ready
    assert rec.when(PhaseStarted, "c") < a_ready  # in parallel, not after a
    # the engine's own record agrees: b's container started after a answered
    client = docker.from_env()
    try:
        attrs = client.api.inspect_container(container_name(p, p.services["b"]))
    finally:
        client.close()
    from devenv.services.docker import _started_at

    started_b = _started_at(attrs["State"]["StartedAt"])
    assert started_b is not None and started_b >= a_ready - 0.05
    # a's own log says it listened only after the delay
    logs = "\n".join(DockerBackend().logs(p, p.services["a"]))
    assert "listening on 8080" in logs


def test_a_service_that_never_becomes_ready_is_named_with_its_last_log_lines(
        project: Callable[..., Project]) -> None:
    """The container runs and its port is published, but nothing listens inside: the
    host's connection is closed at once by the engine's proxy, so it is never ready."""
    p = project({"stuck": web(
        command=["sh", "-c", "echo booting; echo waiting for a licence server; sleep 600"],
        ready="tcp", ready_timeout=4)}, steps={"s": {"run": "true", "needs": ["stuck"]}})
    done = subprocess.run([sys.executable, "-m", "devenv", "--plain", "-f",
                           str(p.file), "run"], capture_output=True, text=True, timeout=180)
    assert done.returncode == EXIT_SERVICE, done.stdout + done.stderr
    text = done.stdout + done.stderr
    assert "service stuck did not become healthy within 4s" in text
    assert "waiting for a licence server" in text
    assert "see the whole log: devenv logs stuck" in text


def test_ready_cmd_runs_inside_the_container_and_the_port_must_answer_too(
        project: Callable[..., Project]) -> None:
    p = project({"web": web(ready={"cmd": "test -e /tmp/go"},
                            command=["sh", "-c", "sleep 1; touch /tmp/go; "
                                     "exec perl /server.pl"])})
    ep = DockerBackend().up(p, p.services["web"], Recorder(), timeout=30)
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{ep.port(8080)}/", timeout=5) as r:
        assert r.status == 200


COMPOSE = """services:
  api:
    build:
      context: ./web
      args:
        UNUSED: "1"
    environment:
      - MESSAGE=from compose
    ports:
      - "8080"
    depends_on:
      cache:
        condition: service_healthy
  cache:
    build: ./web
    environment:
      MESSAGE: cache
    ports: ["8080"]
    healthcheck:
      test: ["CMD-SHELL", "perl -MIO::Socket::INET -e 'exit !IO::Socket::INET->new(q(127.0.0.1:8080))'"]
      interval: 1s
    volumes:
      - cachedata:/data
volumes:
  cachedata: {}
"""


def test_services_from_a_compose_file_start_in_order(
        project: Callable[..., Project]) -> None:
    p = project({})
    (p.root / "compose.yaml").write_text(COMPOSE)
    p = project({"from": "compose.yaml"})
    assert list(p.services) == ["api", "cache"]
    assert p.services["api"].needs == ("cache",)
    assert p.services["cache"].volumes == {"cachedata": "/data"}
    rec = Recorder()
    eps = Session(p, rec).start(["api"])
    assert rec.when(PhaseStarted, "api") >= rec.when(PhaseFinished, "cache")
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{eps['api'].port(8080)}/",
                                timeout=5) as r:
        assert r.read() == b"from compose\n"


def test_a_service_address_reaches_a_process(project: Callable[..., Project]) -> None:
    """`devenv up --detach` on a fresh checkout: the process's ${WEB_PORT} (in its env:)
    is checked before the service has a port, then the process reads WEB_URL; a service
    that moves to another port is part of what restarts the process."""
    from devenv import processes

    script = ("import os, time, urllib.request\n"
              "body = urllib.request.urlopen(os.environ['WEB_URL'], timeout=5).read()\n"
              "open('proc.txt', 'w').write(body.decode() + os.environ['ADDR'])\n"
              "time.sleep(300)\n")
    p = project({"web": web(url="http://${host}:${port}/", env={"MESSAGE": "to process"})})
    config = yaml.safe_load(p.file.read_text())
    config["processes"] = {"reader": {
        "run": [sys.executable, "-c", script], "needs": ["web"],
        "ready": "cmd: test -s proc.txt", "ready_timeout": 20,
        "env": {"ADDR": "port ${WEB_PORT}"}}}
    p.file.write_text(yaml.safe_dump(config, sort_keys=False))
    p = loader.load(p.file)
    try:
        done = subprocess.run([sys.executable, "-m", "devenv", "--plain", "-f", str(p.file),
                               "up", "--detach"], capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        ep = DockerBackend().endpoint(p, p.services["web"])
        assert ep is not None
        port = ep.port(8080)
        assert (p.root / "proc.txt").read_text() == f"to process\nport {port}"
        prepared = processes.prepare(p, ["reader"], None)
        assert {"WEB_URL", "WEB_PORT", "WEB_HOST"} <= prepared[0].declared
    finally:
        processes.stop_all(p, grace=1)


def test_a_process_in_a_container_beside_the_services(project: Callable[..., Project]) -> None:
    """`image:` on a process: it runs in a container (the project mounted at its own path,
    the host's network), reads the service's address like a host process, writes into the
    repository as the user, and stopping it removes its container."""
    from devenv import processes

    p = project({"web": web(url="http://${host}:${port}/")})
    config = yaml.safe_load(p.file.read_text())
    config["processes"] = {"boxed": {
        "image": BASE, "needs": ["web"], "ready": "cmd: test -s boxed.txt",
        "ready_timeout": 30,
        "run": 'perl -MIO::Socket::INET -e \'IO::Socket::INET->new("$ENV{WEB_HOST}:'
               '$ENV{WEB_PORT}") or die "no web: $!"\' && '
               'echo "web at ${WEB_URL} from $(cat /etc/debian_version)" > boxed.txt && '
               'exec sleep 300'}}
    p.file.write_text(yaml.safe_dump(config, sort_keys=False))
    p = loader.load(p.file)
    client = docker.from_env()
    flt = {"label": [f"devenv.project={p.name}", "devenv.process=boxed"]}
    try:
        done = subprocess.run([sys.executable, "-m", "devenv", "--plain", "-f", str(p.file),
                               "up", "--detach"], capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        ep = DockerBackend().endpoint(p, p.services["web"])
        assert ep is not None
        out = p.root / "boxed.txt"
        assert out.read_text().startswith(f"web at http://127.0.0.1:{ep.port(8080)}/ from 12")
        assert out.stat().st_uid == __import__("os").getuid()
        assert len(client.containers.list(filters=flt)) == 1
    finally:
        processes.stop_all(p, grace=5)
    deadline = time.monotonic() + 10
    while client.containers.list(all=True, filters=flt) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.containers.list(all=True, filters=flt) == []
    client.close()


def test_a_process_in_an_image_built_from_the_repository(
        project: Callable[..., Project]) -> None:
    """`build:` on a process: `up` builds its image with the services' build code (a tag
    per content of the folder, the build's log in .devenv/logs), runs the process in it,
    builds nothing when the folder is unchanged, and an edit builds a new image that the
    restarted process runs."""
    from devenv import processes

    p = project({"web": web(url="http://${host}:${port}/")})
    box = p.root / "box"
    box.mkdir()
    (box / "Dockerfile").write_text(f"FROM {BASE}\nCOPY baked.txt /baked.txt\n")
    (box / "baked.txt").write_text("first")
    config = yaml.safe_load(p.file.read_text())
    config["processes"] = {"boxed": {
        "build": {"context": "box", "network": "host"}, "needs": ["web"],
        "ready": "cmd: test -s boxed.txt", "ready_timeout": 30,
        "run": 'echo "$(cat /baked.txt) ${WEB_URL}" > boxed.txt && exec sleep 300'}}
    p.file.write_text(yaml.safe_dump(config, sort_keys=False))
    p = loader.load(p.file)
    client = docker.from_env()
    out = p.root / "boxed.txt"

    def up() -> str:
        out.unlink(missing_ok=True)
        done = subprocess.run([sys.executable, "-m", "devenv", "--plain", "-f", str(p.file),
                               "up", "--detach"], capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    try:
        tag = processes.image_of(p, p.processes["boxed"])
        assert tag is not None and tag.startswith(f"devenv/{p.name}-boxed:")
        first = up()
        assert f"building image {tag}" in first
        ep = DockerBackend().endpoint(p, p.services["web"])
        assert ep is not None
        assert out.read_text() == f"first http://127.0.0.1:{ep.port(8080)}/\n"
        assert "COPY baked.txt" in (p.state_dir / "logs" / "build-boxed.log").read_text()
        running = client.containers.list(filters={"label": [
            f"devenv.project={p.name}", "devenv.process=boxed"]})
        assert [c.image.tags for c in running] == [[tag]]

        again = up()  # a detached up keeps it running: same image, nothing built
        assert "building image" not in again
        # present by its content tag: known from the engine's socket, without the SDK
        assert dockerlib.images_present([tag])
        assert not dockerlib.images_present([tag, f"{tag}-no-such-build"])
        probe = subprocess.run([sys.executable, "-c", (
            "import sys; from devenv import loader, processes; "
            f"p = loader.load({str(p.file)!r}); "
            "processes.build_images(p, ['boxed'], None); "
            "print('docker' in sys.modules)")], capture_output=True, text=True, timeout=60)
        assert probe.stdout.strip() == "False", probe.stdout + probe.stderr

        (box / "baked.txt").write_text("second")
        new_tag = processes.image_of(p, p.processes["boxed"])
        assert new_tag != tag
        changed = up()
        assert f"building image {new_tag}" in changed
        assert out.read_text().startswith("second ")
    finally:
        processes.stop_all(p, grace=5)
        client.close()


def test_ctrl_c_stops_a_parallel_start_at_once(project: Callable[..., Project]) -> None:
    """Two services starting side by side, one never ready: SIGINT ends `devenv run`
    within a second or two, not when the stuck one's 60 s wait runs out."""
    import signal

    p = project({"ok": web(), "stuck": web(
        command=["sh", "-c", "echo stuck; sleep 600"], ready="tcp", ready_timeout=60)},
        steps={"s": {"run": "true", "needs": ["ok", "stuck"]}})
    child = subprocess.Popen([sys.executable, "-m", "devenv", "--plain", "-f", str(p.file),
                              "run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    assert child.stdout is not None
    for line in child.stdout:  # wait until both are being started
        if "ok is healthy" in line:
            break
    time.sleep(1)
    child.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    child.wait(timeout=30)
    assert time.monotonic() - t0 < 5
    assert child.returncode == 130


def test_running_services_are_checked_in_turn_and_only_what_changed_is_started(
        project: Callable[..., Project]) -> None:
    """A daily `up` finds its services running: each is asked once, one after another
    in the calling thread (a thread each cost more than the checks). A service whose
    definition changed, or whose container stopped, gets the full start, and what needs
    it waits for it as before."""
    import threading
    import urllib.request

    from devenv.events import Message

    class Threads(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.threads: dict[str, str] = {}

        def emit(self, event: Event) -> None:
            super().emit(event)
            if isinstance(event, PhaseFinished):
                self.threads[event.name] = threading.current_thread().name

    def says(port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            return str(r.read().decode().strip())

    def define(c_says: str) -> Project:
        return project({"a": web(), "b": web(needs=["a"], env={"MESSAGE": "b"}),
                        "c": web(env={"MESSAGE": c_says}), "d": web(env={"MESSAGE": c_says})})

    p = define("c1")
    Session(p, Recorder()).start(list(p.services))
    # all four run as defined: every one checked in this thread, nothing recreated
    rec = Threads()
    eps = Session(p, rec).start(list(p.services))
    assert rec.threads == dict.fromkeys("abcd", threading.current_thread().name)
    assert not [e for _, e in rec.events if isinstance(e, Message)]
    assert [says(eps[n].port(8080)) for n in "abcd"] == ["hello", "b", "c1", "c1"]
    for name in "abcd":  # up_now agrees with the endpoint up found
        ep = DockerBackend().up_now(p, p.services[name])
        assert ep is not None and ep.ports == eps[name].ports
    # c and d changed: they are recreated by the full start, a and b are only checked
    p = define("c2")
    assert DockerBackend().up_now(p, p.services["c"]) is None
    rec = Threads()
    eps = Session(p, rec).start(list(p.services))
    main = threading.current_thread().name
    assert rec.threads["a"] == rec.threads["b"] == main
    assert rec.threads["c"] != main and rec.threads["d"] != main
    changed = [e.text for _, e in rec.events if isinstance(e, Message)]
    assert len(changed) == 2 and all("its definition changed" in t for t in changed)
    assert [says(eps[n].port(8080)) for n in "abcd"] == ["hello", "b", "c2", "c2"]
    # a stopped: it starts again, and b (which needs it) is checked only after it
    client = docker.from_env()
    try:
        client.containers.get(container_name(p, p.services["a"])).stop(timeout=2)
    finally:
        client.close()
    assert DockerBackend().up_now(p, p.services["a"]) is None
    rec = Threads()
    eps = Session(p, rec).start(list(p.services))
    assert rec.threads["a"] != main and rec.threads["c"] == rec.threads["d"] == main
    assert rec.when(PhaseStarted, "b") >= rec.when(PhaseFinished, "a")
    assert says(eps["a"].port(8080)) == "hello" and says(eps["b"].port(8080)) == "b"
