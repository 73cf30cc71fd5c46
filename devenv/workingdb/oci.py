"""The team's snapshot cache in an OCI registry: build a database once, pull it everywhere.

``cache: {remote: oci://REGISTRY/REPOSITORY}`` in steps.yaml (``DEVENV_CACHE_REMOTE``
overrides it; ``off`` turns it off, as ``--no-remote-cache`` does). A snapshot is an OCI
artifact (ORAS's conventions: one layer, titled, empty config) tagged by the fingerprint
of the steps it holds (:func:`devenv.fingerprint.combined`, the key of the local cache
snapshots). Its one layer is a devenv snapshot file (:mod:`devenv.postgres.dumpfiles`: a JSON header
line, then ``pg_dump -Fc``, which zlib-compresses the table data itself). The manifest's
annotations (``dev.devenv.snapshot.*``) say project, steps, PostgreSQL version, size,
created-by and created-at, so a lookup can refuse an artifact before downloading it.

Signing (optional): ``cache: {sign_key: FILE}`` (or ``DEVENV_CACHE_SIGN_KEY``, a file or
the PEM text) signs at push with Ed25519 over ``devenv-snapshot-v1``, project, key, the
layer's digest and size; the signature and the signer's id go in the manifest annotations
``dev.devenv.snapshot.signature`` / ``.signer``. With ``cache: {trust: [FILE...]}`` (or
``DEVENV_CACHE_TRUST``, paths separated by ``:``) only artifacts signed by one of those
public keys are restored. The layer's digest is checked as it downloads, so the signature
covers the bytes restored.

Credentials, as docker finds them: ``DEVENV_CACHE_USER`` + ``DEVENV_CACHE_PASSWORD`` or
``DEVENV_CACHE_TOKEN`` (CI), else docker's ``config.json`` (``credHelpers``, ``auths``,
``credsStore``; helpers run as ``docker-credential-NAME get``). Never printed, never
written.

The client is the ``oras`` package (oras-py), imported only here and only when a remote
is used (it costs ~0.6 s to import). Its request method retries every failure five times
with sleeps of 3 to 83 s (a registry that is down, or a 401 without credentials, took
131 s to fail) and sets no timeout; :class:`_Registry` replaces that one method with a
single attempt under a timeout, so a broken cache costs seconds, never minutes.

Nothing here makes a command fail: every problem is one line (``remote cache: ...``) and
the caller builds from the steps instead.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import getpass
import hashlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devenv import fingerprint, graph, proc, watchdog
from devenv.errors import DevenvError, UsageError, first_line
from devenv.events import Message, PhaseFinished, PhaseStarted, Reporter
from devenv.jsonfile import ensure_state_dir
from devenv.postgres import database, dumpfiles, siblings
from devenv.postgres.database import Target
from devenv.schema import Project
from devenv.session import Session
from devenv.state import StateStore
from devenv.workingdb import rerun

ENV_REMOTE = "DEVENV_CACHE_REMOTE"
OFF = ("", "off", "none", "no", "0", "false")
LAYER_TYPE = "application/vnd.devenv.snapshot.v1"
ANN = "dev.devenv.snapshot."
CREATED = "org.opencontainers.image.created"
SIG_CONTEXT = b"devenv-snapshot-v1\n"


class RemoteError(DevenvError):
    """Why the remote cache could not be used; one line, and the caller builds instead."""


def _timeout() -> float:
    try:
        return float(os.environ.get("DEVENV_CACHE_TIMEOUT", "30"))
    except ValueError:
        return 30.0


# --------------------------------------------------------------------------- where


@dataclass(frozen=True)
class Remote:
    """``oci://REGISTRY/REPOSITORY``."""

    url: str
    registry: str  # host[:port]
    repository: str

    @property
    def insecure(self) -> bool:
        """Plain HTTP: for a registry on this machine (as docker allows) or when asked."""
        host = self.registry.rsplit(":", 1)[0] if not self.registry.startswith("[") \
            else self.registry
        return (host in ("localhost", "[::1]") or host.startswith("127.")
                or os.environ.get("DEVENV_CACHE_INSECURE", "") == "1")

    def ref(self, tag: str) -> str:
        return f"{self.registry}/{self.repository}:{tag}"


def parse(url: str) -> Remote:
    rest = url.strip().removeprefix("oci://")
    registry, _, repository = rest.partition("/")
    if not url.strip().startswith("oci://") or not registry or not repository:
        raise UsageError(f"remote cache {url!r}: expected oci://REGISTRY/REPOSITORY "
                         "(e.g. oci://ghcr.io/acme/shop-db)")
    return Remote(f"oci://{registry}/{repository}", registry, repository.lower())


def configured(project: Project) -> Remote | None:
    """The remote cache in use: ``DEVENV_CACHE_REMOTE`` (``off`` for none), else steps.yaml."""
    env = os.environ.get(ENV_REMOTE)
    if env is not None:
        return None if env.strip().lower() in OFF else parse(env)
    return parse(project.cache_remote) if project.cache_remote else None


# --------------------------------------------------------------------------- credentials


def _docker_config() -> dict[str, Any]:
    folder = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    try:
        data = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _helper(name: str, registry: str) -> tuple[str, str] | None:
    try:
        cp = proc.run([f"docker-credential-{name}", "get"], input=registry, timeout=20,
                      check=False)
    except proc.ProcessError:
        return None
    if cp.returncode != 0:
        return None  # "credentials not found in native keychain": anonymous
    try:
        data = json.loads(cp.stdout)
        return str(data["Username"]), str(data["Secret"])
    except (ValueError, KeyError, TypeError):
        return None


def credentials(registry: str) -> tuple[str, str] | None:
    """(user, secret) for ``registry``, or None for anonymous access."""
    token = os.environ.get("DEVENV_CACHE_TOKEN")
    user = os.environ.get("DEVENV_CACHE_USER")
    if token:
        return user or "devenv", token
    password = os.environ.get("DEVENV_CACHE_PASSWORD")
    if user and password is not None:
        return user, password
    cfg = _docker_config()
    helpers = cfg.get("credHelpers")
    if isinstance(helpers, dict) and isinstance(helpers.get(registry), str):
        return _helper(helpers[registry], registry)
    auths = cfg.get("auths")
    if isinstance(auths, dict):
        for key, entry in auths.items():
            host = str(key).removeprefix("https://").removeprefix("http://").split("/")[0]
            if host == registry and isinstance(entry, dict) and entry.get("auth"):
                with contextlib.suppress(ValueError):
                    u, _, p = base64.b64decode(str(entry["auth"])).decode().partition(":")
                    return u, p
    store = cfg.get("credsStore")
    if isinstance(store, str) and store:
        return _helper(store, registry)
    return None


# --------------------------------------------------------------------------- the client


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    for part in rest.split(","):
        k, _, v = part.strip().partition("=")
        if k:
            params[k.strip()] = v.strip().strip('"')
    return scheme.lower(), params


def _registry_class() -> Any:
    import oras.provider
    import requests

    class _Registry(oras.provider.Registry):  # type: ignore[misc]
        """oras-py's registry with one request method changed: one attempt, a timeout,
        and Basic or Bearer auth from :func:`credentials` (see the module's doc)."""

        creds: tuple[str, str] | None = None
        auth_header: str | None = None

        def do_request(self, url: str, method: str = "GET", data: Any = None,
                       headers: dict[str, str] | None = None, json: Any = None,
                       stream: bool = False) -> Any:
            sent = dict(headers or {})
            if self.auth_header:
                sent["Authorization"] = self.auth_header
            r = self._send(method, url, data, sent, json, stream)
            if r.status_code == 401 and self.creds is not None:
                new = self._authorize(r.headers.get("Www-Authenticate", ""))
                if new and new != sent.get("Authorization"):
                    self.auth_header = new
                    sent["Authorization"] = new
                    r = self._send(method, url, data, sent, json, stream)
            return r

        def _send(self, method: str, url: str, data: Any, headers: dict[str, str],
                  body: Any, stream: bool) -> Any:
            try:
                return self.session.request(method, url, data=data, json=body,
                                            headers=headers, stream=stream,
                                            verify=self._tls_verify, timeout=_timeout())
            except requests.RequestException as exc:
                raise RemoteError(f"{self.hostname} is unreachable "
                                  f"({type(exc).__name__})") from None

        def _authorize(self, header: str) -> str | None:
            assert self.creds is not None
            user, secret = self.creds
            scheme, params = _challenge(header)
            basic = base64.b64encode(f"{user}:{secret}".encode()).decode()
            if scheme == "basic":
                return f"Basic {basic}"
            if scheme != "bearer" or "realm" not in params:
                return None
            query = {k: v for k, v in params.items() if k in ("service", "scope")}
            try:
                t = self.session.get(params["realm"], params=query, timeout=_timeout(),
                                     headers={"Authorization": f"Basic {basic}"},
                                     verify=self._tls_verify)
                body = t.json() if t.status_code == 200 else {}
            except (requests.RequestException, ValueError):
                return None
            token = body.get("token") or body.get("access_token")
            return f"Bearer {token}" if token else None

    return _Registry


class Client:
    """Push and pull devenv snapshots in one repository."""

    def __init__(self, remote: Remote) -> None:
        import logging

        self.remote = remote
        self.reg = _registry_class()(hostname=remote.registry, insecure=remote.insecure,
                                     auth_backend="basic")
        self.reg.creds = credentials(remote.registry)
        # oras reads docker's config itself (and may warn on stderr); devenv did that above.
        self.reg.auth.load_configs = lambda *a, **k: None
        logging.getLogger("oras").setLevel(logging.CRITICAL)
        import oras.logger

        oras.logger.logger.set_level(logging.CRITICAL)

    def _container(self, tag: str) -> Any:
        return self.reg.get_container(self.remote.ref(tag))

    def _refused(self, status: int) -> RemoteError:
        if status == 401:
            how = ("the credentials were refused" if self.reg.creds
                   else "it needs credentials (docker login, or DEVENV_CACHE_USER/"
                   "DEVENV_CACHE_PASSWORD)")
            return RemoteError(f"{self.remote.registry} answered 401: {how}")
        if status == 403:
            return RemoteError(f"{self.remote.registry} answered 403: these credentials may "
                               f"not use {self.remote.repository}")
        return RemoteError(f"{self.remote.registry} answered HTTP {status}")

    def ping(self) -> None:
        """Raise RemoteError unless the registry answers and lets us in."""
        r = self.reg.do_request(f"{self.reg.prefix}://{self.remote.registry}/v2/", "GET")
        if r.status_code != 200:
            raise self._refused(r.status_code)

    def manifest(self, tag: str) -> tuple[dict[str, Any], str] | None:
        """The manifest tagged ``tag`` and its digest, or None when there is none."""
        c = self._container(tag)
        r = self.reg.do_request(f"{self.reg.prefix}://{c.manifest_url()}", "GET", headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json"})
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise self._refused(r.status_code)
        try:
            body = r.json()
        except ValueError:
            raise RemoteError(f"{self.remote.ref(tag)}: the manifest is not JSON") from None
        if not isinstance(body, dict):
            raise RemoteError(f"{self.remote.ref(tag)}: the manifest is not an object")
        return body, str(r.headers.get("Docker-Content-Digest", ""))

    def tags(self) -> list[str]:
        c = self._container("x")
        r = self.reg.do_request(f"{self.reg.prefix}://{c.tags_url()}", "GET")
        if r.status_code == 404:
            return []
        if r.status_code != 200:
            raise self._refused(r.status_code)
        return [str(t) for t in (r.json().get("tags") or [])]

    def push(self, path: Path, tag: str, annotations: dict[str, str]) -> None:
        # oras splits "path:mediatype" at the last colon.
        spec = f"{path}:{LAYER_TYPE}"
        try:
            self.reg.push(self.remote.ref(tag), files=[spec], manifest_annotations=annotations,
                          disable_path_validation=True, do_chunked=True, quiet=True)
        except RemoteError:
            raise
        except ValueError as exc:  # oras' "Issue with URL: reason"
            raise RemoteError(f"push to {self.remote.url} failed: {exc}") from None

    def blob(self, tag: str, digest: str, size: int) -> Iterator[bytes]:
        """The bytes of blob ``digest``, as they download; after the last chunk, raises
        RemoteError if they were not ``size`` bytes whose sha256 is ``digest``. The
        consumer writes them where they go (:func:`dumpfiles.unpack`) and uses them only
        once the iteration has ended without error."""
        c = self._container(tag)
        r = self.reg.do_request(f"{self.reg.prefix}://{c.get_blob_url(digest)}", "GET",
                                stream=True)
        if r.status_code != 200:
            raise self._refused(r.status_code)
        h = hashlib.sha256()
        got = 0
        import requests

        try:
            with r:
                for chunk in r.iter_content(chunk_size=1 << 20):
                    h.update(chunk)
                    got += len(chunk)
                    if got > size:
                        break  # more than the manifest says: refused below, not read on
                    yield chunk
        except requests.RequestException as exc:
            raise RemoteError(f"the download from {self.remote.registry} broke off after "
                              f"{got} of {size} bytes ({type(exc).__name__})") from None
        if got != size:
            raise RemoteError(f"the download from {self.remote.registry} is "
                              f"{'truncated' if got < size else 'longer than its manifest'}"
                              f": {got} of {size} bytes")
        if f"sha256:{h.hexdigest()}" != digest:
            raise RemoteError(f"the blob's digest does not match its manifest ({digest[:19]}"
                              "...): damaged or tampered in the registry")


# --------------------------------------------------------------------------- signatures


def _sign_payload(project: str, key: str, digest: str, size: int) -> bytes:
    return SIG_CONTEXT + f"{project}\n{key}\n{digest}\n{size}\n".encode()


def _pem(value: str) -> bytes:
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read key {value}: {exc.strerror}") from None


def signer_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _raw_public(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def sign_key(project: Project) -> Any | None:
    """The Ed25519 private key artifacts are signed with, if the project or env names one."""
    source = os.environ.get("DEVENV_CACHE_SIGN_KEY") or project.cache_sign_key
    if not source:
        return None
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(_pem(source), password=None)
    except ValueError:
        raise UsageError("the cache signing key is not a PEM private key (make one with "
                         "`openssl genpkey -algorithm ed25519 -out cache-sign.pem`)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError("the cache signing key is not an Ed25519 key")
    return key


def trusted_keys(project: Project) -> dict[str, Any]:
    """signer id -> Ed25519 public key, for the keys the project trusts (none: no check)."""
    paths = list(project.cache_trust)
    env = os.environ.get("DEVENV_CACHE_TRUST", "")
    paths += [p for p in env.split(os.pathsep) if p]
    out: dict[str, Any] = {}
    if not paths:
        return out  # no keys to read: no cryptography import (~30 ms) on every remote hit
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    for p in paths:
        try:
            key = serialization.load_pem_public_key(_pem(p))
        except ValueError:
            raise UsageError(f"trusted key {p} is not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise UsageError(f"trusted key {p} is not an Ed25519 key")
        out[signer_id(_raw_public(key))] = key
    return out


def check_signature(project: Project, annotations: dict[str, str], key: str,
                    layer: dict[str, Any]) -> str:
    """Refuse an artifact the project does not trust; returns who signed it ('' if no
    trust is configured)."""
    trusted = trusted_keys(project)
    if not trusted:
        return ""
    sig = annotations.get(ANN + "signature")
    who = annotations.get(ANN + "signer", "")
    if not sig:
        raise RemoteError("the snapshot is unsigned and this project trusts only signed ones")
    pub = trusted.get(who)
    if pub is None:
        raise RemoteError(f"the snapshot is signed by key {who[:16] or '?'}, which this "
                          "project does not trust (cache.trust)")
    from cryptography.exceptions import InvalidSignature

    payload = _sign_payload(annotations.get(ANN + "project", ""), key,
                            str(layer.get("digest", "")), int(layer.get("size", 0)))
    try:
        pub.verify(base64.b64decode(sig), payload)
    except (InvalidSignature, ValueError):
        raise RemoteError(f"the snapshot's signature (key {who[:16]}) does not verify") \
            from None
    return who


# --------------------------------------------------------------------------- push


def created_by() -> str:
    """Who pushes: DEVENV_CACHE_AUTHOR, else "ci" on a CI runner, else user@host."""
    if os.environ.get("DEVENV_CACHE_AUTHOR"):
        return os.environ["DEVENV_CACHE_AUTHOR"]
    if os.environ.get("CI"):
        return "ci"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "someone"
    return f"{user}@{socket.gethostname()}"


def push_file(project: Project, remote: Remote, path: Path, reporter: Reporter) -> str:
    """Push snapshot file ``path`` tagged by its key; returns the tag. Two pushes of one
    key at once each upload their blob (content-addressed) and then put their manifest:
    the tag ends on one of the two, each complete and valid."""
    header, _ = dumpfiles.read_header(path)
    size = path.stat().st_size
    digest = "sha256:" + _file_sha256(path)
    ann = {
        ANN + "project": header.project,
        ANN + "key": header.key,
        ANN + "steps": ",".join(header.steps),
        ANN + "postgres": str(header.server_version_num),
        ANN + "size": str(size),
        ANN + "dump-size": str(header.size),
        ANN + "created-by": created_by(),
        CREATED: datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    key = sign_key(project)
    if key is not None:
        sig = key.sign(_sign_payload(header.project, header.key, digest, size))
        ann[ANN + "signature"] = base64.b64encode(sig).decode()
        ann[ANN + "signer"] = signer_id(_raw_public(key.public_key()))
    client = Client(remote)
    reporter.emit(PhaseStarted("push", f"pushing snapshot {header.key[:12]} to {remote.url}"))
    t0 = time.monotonic()
    try:
        client.push(path, header.key, ann)
    except BaseException:
        reporter.emit(PhaseFinished("push", "push failed", ok=False))
        raise
    signed = f", signed by {ann[ANN + 'signer']}" if key is not None else ""
    reporter.emit(PhaseFinished("push", f"pushed snapshot {header.key[:12]} to {remote.url} "
                                f"({size // 1024} KiB in {time.monotonic() - t0:.1f}s"
                                f"{signed})"))
    return header.key


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dump_database(project: Project, target: Target, dbname: str, key: str,
                  steps: Sequence[str], name: str, dest: Path,
                  container: dumpfiles.ServiceExec | None) -> dumpfiles.Header:
    """Write database ``dbname`` as a snapshot file keyed ``key`` (what is pushed)."""
    server = dumpfiles.server_version_num(target)
    tool = dumpfiles.choose_tool("pg_dump", target, dbname, dumpfiles.major_of(server), container)
    fps = fingerprint.compute(project)
    ident = database.identity(target, dbname)
    records = StateStore(project.state_dir).steps(ident) if ident else {}
    header = dumpfiles.Header(
        project=project.name, database=project.database.name if project.database else dbname,
        name=name, key=key, steps=list(steps),
        fingerprints={s: fps[s].value for s in steps if s in fps},
        server_version_num=server, pg_dump_major=tool.major, created=time.time(),
        records={s: r for s, r in records.items() if s in steps})
    return dumpfiles.write(dest, header, lambda sink: dumpfiles.dump(tool, sink, tmpdir=dest.parent))


def spawn_push(project: Project, remote: Remote, path: Path) -> int:
    """Upload ``path`` in a detached process (the command returns now); it deletes the file
    when done. Output in .devenv/logs/push.log."""
    env = dict(os.environ)
    env[ENV_REMOTE] = remote.url
    return proc.detach([sys.executable, "-m", "devenv.background", "push", str(project.file),
                        str(path)], env=env, log=project.state_dir / "logs" / "push.log")


# --------------------------------------------------------------------------- pull


@dataclass(frozen=True)
class Hit:
    """A snapshot pulled from the remote and checked: its header, and its dump in a local
    file (the bare ``pg_dump`` archive, which ``pg_restore -j`` reads)."""

    remote: Remote
    key: str
    held: tuple[str, ...]
    path: Path
    header: dumpfiles.Header
    pushed_by: str
    pushed_at: str

    def describe(self) -> str:
        when = self.pushed_at[:10] or "an unknown date"
        return (f"restored snapshot {self.key[:12]} from {self.remote.url} "
                f"(pushed by {self.pushed_by or 'someone'} on {when})")


def _download_dir(project: Project) -> Path:
    d = ensure_state_dir(project.state_dir) / "remote"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def fetch(project: Project, client: Client, tag: str, server_num: int,
          found: tuple[dict[str, Any], str] | None = None,
          expect_key: str | None = None) -> Hit | None:
    """Pull snapshot ``tag`` and check everything before anything is restored: project,
    server version, signature (when the project trusts keys), the blob's digest, the
    file's own header and checksum. None when there is no such tag."""
    found = found if found is not None else client.manifest(tag)
    if found is None:
        return None
    manifest, _ = found
    ann = manifest.get("annotations") or {}
    layers = [la for la in manifest.get("layers") or [] if isinstance(la, dict)]
    if not isinstance(ann, dict) or len(layers) != 1 or \
            layers[0].get("mediaType") != LAYER_TYPE:
        raise RemoteError(f"{client.remote.ref(tag)} is not a devenv snapshot")
    layer = layers[0]
    ann = {str(k): str(v) for k, v in ann.items()}
    if ann.get(ANN + "project") != project.name:
        raise RemoteError(f"{client.remote.ref(tag)} is a snapshot of project "
                          f"'{ann.get(ANN + 'project')}', not '{project.name}'")
    their = int(ann.get(ANN + "postgres", "0") or 0)
    if dumpfiles.major_of(their) > dumpfiles.major_of(server_num):
        raise RemoteError(f"the snapshot was dumped from PostgreSQL {dumpfiles.major_of(their)}, "
                          f"newer than this server ({dumpfiles.major_of(server_num)})")
    key = ann.get(ANN + "key", "")
    if expect_key is not None and key != expect_key:
        raise RemoteError(f"{client.remote.ref(tag)} holds key {key[:12]}, not "
                          f"{expect_key[:12]}")
    check_signature(project, ann, key, layer)
    size = int(layer.get("size", 0))
    digest = str(layer.get("digest", ""))
    path = _download_dir(project) / f"{key[:24]}.{os.getpid()}.dump"
    try:
        # One pass: the blob's digest, the header, and the dump's own size and sha256 are
        # checked as it downloads; the dump goes to its own file for pg_restore -j. Nothing
        # is restored before the last check has passed.
        header = dumpfiles.unpack(client.blob(tag, digest, size), path, "the pulled snapshot")
        if header.key != key or header.project != project.name:
            raise RemoteError("the snapshot file inside does not match its annotations")
        if header.server_major > dumpfiles.major_of(server_num):
            raise RemoteError(f"the snapshot was dumped from PostgreSQL "
                              f"{header.server_major}, newer than this server "
                              f"({dumpfiles.major_of(server_num)})")
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if isinstance(exc, dumpfiles.DumpError):
            raise RemoteError(str(exc)) from None
        raise
    return Hit(client.remote, key, tuple(header.steps), path, header,
               ann.get(ANN + "created-by", ""), ann.get(CREATED, ""))


def find(project: Project, client: Client, fps: dict[str, fingerprint.Fingerprint],
         steps: list[str], deeper_than: int, reporter: Reporter,
         ) -> tuple[str, tuple[dict[str, Any], str]] | None:
    """The key and manifest of the deepest snapshot in the remote holding more than
    ``deeper_than`` of ``steps`` (the whole set, then each snapshot point, deepest first);
    nothing is downloaded (:func:`fetch` or :func:`pull` does that)."""
    sets = [list(steps), *graph.snapshot_points(project, steps)]
    # What CI pushes holds its own profile's steps: a developer's profile usually has those
    # plus a few local ones, which then run on top (when the set holds all it needs).
    wanted = set(steps)
    for profile in project.profiles:
        held = [n for n in steps if project.steps[n].in_profile(profile)]
        if held and set(held) < wanted and graph.closure(project, held) & wanted <= set(held):
            sets.append(held)
    candidates: list[list[str]] = []
    for held in sorted(sets, key=len, reverse=True):
        if held not in candidates:
            candidates.append(held)
    looked = 0
    for held in candidates:
        if len(held) <= deeper_than:
            break
        key = fingerprint.combined(fps, held)
        looked += 1
        found = client.manifest(key)
        if found is not None:
            return key, found
    if looked:
        reporter.emit(Message(f"remote cache: no snapshot of these steps in {client.remote.url}"
                              f" ({looked} looked up)"))
    return None


class Preparation:
    """:func:`dumpfiles.prepare_untrusted` on a thread of its own, started as soon as a
    manifest is found, or before the registry is asked at all when nothing local could be
    restored instead (:func:`_early`): the privileged check, the import role and the CREATE
    DATABASE (0.02-0.4 s here, as making files slows and speeds up; issue 15) then happen
    while the registry's client loads, the manifests are read and the blob downloads,
    instead of after them. The thread only prepares; the restore itself runs in the
    calling thread (:func:`restore_file`), and only after every check of the download has
    passed. The import role cannot log in while the blob downloads: it may only from the
    restore on.

    Its statements go through the process's kept maintenance connection
    (:func:`database.connect`), which the calling thread may use at the same time (it
    does not while downloading; ``restore_fresh`` reads and drops the old database after
    it): that is safe because a libpq :class:`~devenv.postgres.libpq.Connection` runs one
    statement at a time under its lock, a transaction holds that lock to its end (no
    other thread's statement lands inside it), and the preparation sets nothing on the
    session, so an interleaving changes no statement's meaning.

    Whatever the outcome, the caller ends with :meth:`abandon` (in a ``finally``): it
    waits for the thread, then drops the database and closes the import role unless the
    restore ran (which closed the role itself), so neither a refused download nor Ctrl-C
    leaves a database or a role able to log in.
    """

    def __init__(self, target: Target, dbname: str, *, create: bool = True) -> None:
        self.dbname = dbname
        self._prepared: dumpfiles.PreparedRestore | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(target, dbname, create),
                                        name=f"devenv-prepare-{dbname}")
        self._thread.start()

    def _run(self, target: Target, dbname: str, create: bool) -> None:
        try:
            self._prepared = dumpfiles.prepare_untrusted(target, dbname, create=create)
        except BaseException as exc:  # raised in the calling thread by result()
            self._error = exc

    def _join(self) -> KeyboardInterrupt | None:
        """Wait for the thread to end, even through Ctrl-C: what it made must exist
        before anything is cleaned. Returns the Ctrl-C that came meanwhile, for the
        caller to raise once it has cleaned."""
        interrupted: KeyboardInterrupt | None = None
        while self._thread.is_alive():
            try:
                self._thread.join()
            except KeyboardInterrupt as exc:
                interrupted = exc
        return interrupted

    def result(self) -> dumpfiles.PreparedRestore:
        """The prepared restore, once the thread has ended; its failure is raised here as
        it would have been without the thread."""
        interrupted = self._join()
        if interrupted is not None:
            self.abandon()
            raise interrupted
        if self._error is not None:
            raise self._error
        assert self._prepared is not None
        return self._prepared

    def abandon(self) -> None:
        """Wait for the thread, then undo what it prepared, unless the restore ran."""
        interrupted = self._join()
        if self._prepared is not None:
            self._prepared.abandon()  # nothing after PreparedRestore.restore
        if interrupted is not None:
            raise interrupted


@contextlib.contextmanager
def _early(target: Target, dbname: str, wanted: bool, *, create: bool = True,
           ) -> Iterator[Preparation | None]:
    """A :class:`Preparation` of the restore into ``dbname`` started before the remote is
    even asked (when ``wanted``), for :func:`pulled` to use; undone on the way out unless
    its restore ran (a miss, a refused or failed pull, Ctrl-C)."""
    early = Preparation(target, dbname, create=create) if wanted else None
    try:
        yield early
    finally:
        if early is not None:
            early.abandon()


def key_of(found: tuple[dict[str, Any], str]) -> str:
    """The snapshot key a manifest's annotations name ('' when none): what the blob holds
    is checked against it after the download (:func:`fetch`)."""
    ann = found[0].get("annotations")
    return str(ann.get(ANN + "key", "")) if isinstance(ann, dict) else ""


def pull(project: Project, client: Client, target: Target, dbname: str, tag: str,
         found: tuple[dict[str, Any], str], server_num: int, *, create: bool = True,
         expect_key: str | None = None,
         preparing: Preparation | None = None) -> tuple[Hit, Preparation]:
    """:func:`fetch` snapshot ``tag`` (its manifest ``found``) while a :class:`Preparation`
    readies the restore into ``dbname`` (created now with ``create``, else at the
    restore); ``preparing``: one the caller started earlier (:func:`_early`), used instead.
    Returns the checked hit and the preparation, for :func:`restore_file`; the caller
    unlinks ``hit.path`` and calls ``abandon()`` when done. When the download fails or is
    refused, or on Ctrl-C, the preparation is waited for and undone before this raises."""
    if preparing is None:
        preparing = Preparation(target, dbname, create=create)
    try:
        hit = fetch(project, client, tag, server_num, found, expect_key=expect_key)
    except BaseException:
        preparing.abandon()
        raise
    assert hit is not None  # a manifest was given
    return hit, preparing


@contextlib.contextmanager
def pulled(project: Project, client: Client, target: Target, dbname: str, tag: str,
           found: tuple[dict[str, Any], str], server_num: int, *, create: bool = True,
           expect_key: str | None = None,
           preparing: Preparation | None = None) -> Iterator[tuple[Hit, Preparation]]:
    """:func:`pull`, then, whatever the block does: the preparation undone unless its
    restore ran (:meth:`Preparation.abandon`), and the downloaded file removed."""
    hit, preparing = pull(project, client, target, dbname, tag, found, server_num,
                          create=create, expect_key=expect_key, preparing=preparing)
    try:
        yield hit, preparing
    finally:
        try:
            preparing.abandon()
        finally:
            hit.path.unlink(missing_ok=True)


def _restore_pulled(session: Session, target: Target, dbname: str, hit: Hit,
                    preparing: Preparation, meta: dict[str, Any] | None) -> None:
    """refresh-db's and up's restore of a pulled snapshot into ``dbname``, as one phase;
    on failure nothing of ``dbname`` is left."""
    reporter = session.reporter
    reporter.emit(PhaseStarted("restore", f"restoring snapshot {hit.key[:12]} from "
                               f"{hit.remote.url}"))
    try:
        restore_file(session, target, dbname, hit, meta, preparing)
    except BaseException:
        reporter.emit(PhaseFinished("restore", "restore failed", ok=False))
        # waits for the thread first: its CREATE DATABASE must not follow the drop
        preparing.abandon()
        with contextlib.suppress(Exception):
            database.drop(target, dbname)
        raise
    reporter.emit(PhaseFinished("restore", hit.describe()))


def restore_file(session: Session, target: Target, dbname: str, hit: Hit,
                 meta: dict[str, Any] | None = None,
                 preparing: Preparation | None = None) -> None:
    """Create ``dbname`` (it must not exist) from a pulled snapshot, with the sibling
    ``meta`` (:func:`siblings.meta`) when given.

    The dump is someone else's SQL: it goes through ``dumpfiles.restore_untrusted``, as
    ``snapshot import`` and the ci-setup cache do: no superuser rights while it restores,
    and none for its functions afterwards. It creates the database itself (owned by the
    import role while the dump's SQL runs), so the caller makes none beforehand, and a
    local pg_restore reads the pulled file with ``-j`` (:func:`dumpfiles.restore_jobs`).

    With ``preparing`` (from :func:`pull`), the first half of that work was done while the
    file downloaded: this waits for it (raising its failure as the restore's), then
    restores. The caller still calls ``preparing.abandon()`` in a ``finally``.
    """
    tool = dumpfiles.choose_tool("pg_restore", target, dbname, hit.header.pg_dump_major,
                                 session.tools)
    label = f"snapshot {hit.key[:12]} from {hit.remote.url}"
    if preparing is None:
        dumpfiles.restore_untrusted(target, dbname, tool, hit.path, label=label)
    else:
        assert preparing.dbname == dbname
        preparing.result().restore(tool, hit.path, label=label)
    if meta:
        siblings.set_meta(target, dbname, meta)


def _records(project: Project, hit: Hit) -> dict[str, dict[str, Any]]:
    return rerun.database_held(project, {
        s: {**r, "restored_from": f"the remote cache ({hit.remote.url})"}
        for s, r in hit.header.records.items() if isinstance(r, dict) and s in hit.held})


def _try(reporter: Reporter, what: str) -> contextlib.AbstractContextManager[None]:
    """Turn any failure of the remote cache into one line; the caller then builds."""

    @contextlib.contextmanager
    def guard() -> Any:
        try:
            yield
        except (RemoteError, dumpfiles.DumpError, UsageError, OSError, ValueError,
                proc.ProcessError) as exc:
            text = first_line(exc)
            reporter.emit(Message(f"remote cache: {text}; {what}", "warn"))
            raise _Skipped from None

    return guard()


class _Skipped(Exception):
    pass


def restore_for_refresh(session: Session, target: Target, build: str, store: StateStore,
                        fps: dict[str, fingerprint.Fingerprint], steps: list[str],
                        have: int) -> tuple[str, tuple[str, ...]] | None:
    """refresh-db: when the remote holds a deeper snapshot than the local cache (``have``
    steps), restore it into ``build`` (which must not exist yet) and keep it as a local
    cache snapshot. Returns (key, steps held), or None after one line saying why not."""
    project, reporter = session.project, session.reporter
    remote = configured_quietly(project, reporter)
    if remote is None or have >= len(steps):
        return None
    try:
        with _try(reporter, "building from the steps"):
            server_num = dumpfiles.server_version_num(target)
            # ``build`` does not exist. With nothing local to start from it is made from
            # template0 whatever the remote holds (a hit restores into it; a miss builds in
            # one made the same way), so it is prepared from now on, while the registry's
            # client loads (oras, requests: 0.15-0.25 s here) and the manifests are looked
            # up, not after; on a miss it is dropped and the build makes its own.
            with _early(target, build, have == 0) as early:
                client = Client(remote)
                found = find(project, client, fps, steps, have, reporter)
                if found is None:
                    return None
                with pulled(project, client, target, build, found[0], found[1], server_num,
                            expect_key=found[0], preparing=early) as (hit, preparing):
                    _restore_pulled(session, target, build, hit, preparing,
                                    siblings.meta("build", project.name))
    except _Skipped:
        return None
    ident = database.identity(target, build)
    if ident:
        store.put(ident, target.redacted(build), _records(project, hit))
    return hit.key, tuple(n for n in steps if n in set(hit.held))


def configured_quietly(project: Project, reporter: Reporter) -> Remote | None:
    try:
        return configured(project)
    except UsageError as exc:
        reporter.emit(Message(f"remote cache: {exc}; not using it", "warn"))
        return None


def _is_fresh(project: Project, target: Target) -> bool:
    """The database holds nothing yet: missing, or no relation and no step record."""
    if not database.exists(target, target.dbname):
        return True
    ident = database.identity(target, target.dbname)
    if ident and StateStore(project.state_dir).steps(ident):
        return False
    with database.connect(target) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'"
        ).fetchone()
    return row is not None and int(row[0]) == 0


def restore_fresh(session: Session, target: Target | None) -> bool:
    """up and ci-setup: when the project database is new (nothing built in it yet), fill it
    from the deepest remote snapshot; the build then runs only what it lacks. Never drops
    or overwrites a database that holds anything."""
    project, reporter, profile = session.project, session.reporter, session.profile
    if target is None or project.database is None:
        return False
    remote = configured_quietly(project, reporter)
    if remote is None:
        return False
    steps = [n for n in graph.topo_order(project) if project.steps[n].in_profile(profile)]
    if not steps:
        return False
    fps = fingerprint.compute(project)
    try:
        with _try(reporter, "building from the steps"):
            if not _is_fresh(project, target):
                return False
            existed = database.exists(target, target.dbname)
            server_num = dumpfiles.server_version_num(target)
            # The restore goes into a new database, made while the registry's client
            # loads, the manifests are looked up and the blob downloads (dropped again on
            # a miss). A missing database is made under its own name. An empty one that
            # exists (CI's service container made it) stays as it is until the restore
            # beside it has passed, then that takes its place in one transaction (the
            # swap refresh-db uses): a refused or failed pull leaves it as it was.
            into = (siblings.build_name(target.dbname, watchdog.new_run_id()) if existed
                    else target.dbname)
            with _early(target, into, True) as early:
                client = Client(remote)
                found = find(project, client, fps, steps, 0, reporter)
                if found is None:
                    return False
                with pulled(project, client, target, into, found[0], found[1], server_num,
                            expect_key=found[0], preparing=early) as (hit, preparing):
                    # with the sibling comment the database had, if it had one
                    info = (siblings.find(target, target.dbname, target.dbname)
                            if existed else None)
                    _restore_pulled(session, target, into, hit, preparing,
                                    dict(info.meta) if info is not None and info.meta else None)
                if existed:
                    try:
                        siblings.swap(target, target.dbname, into, backup=False)
                    except BaseException:
                        with contextlib.suppress(Exception):
                            database.drop(target, into)
                        raise
    except _Skipped:
        return False
    ident = database.identity(target, target.dbname)
    if ident:
        StateStore(project.state_dir).put(ident, target.redacted(), _records(project, hit))
    return True


def push_database(session: Session, target: Target) -> bool:
    """ci-setup --push: dump the built database and push it keyed by its steps. A failure
    is one line; the database is ready anyway."""
    project, reporter, profile = session.project, session.reporter, session.profile
    remote = configured_quietly(project, reporter)
    if remote is None:
        reporter.emit(Message("--push: no remote cache configured (cache.remote in steps.yaml"
                              f" or {ENV_REMOTE})", "warn"))
        return False

    steps = [n for n in graph.topo_order(project) if project.steps[n].in_profile(profile)]
    key = fingerprint.combined(fingerprint.compute(project), steps)
    try:
        with _try(reporter, "the database is ready anyway"):
            container = session.tools()
            with tempfile.TemporaryDirectory(prefix="push-", dir=_download_dir(project)) as d:
                path = Path(d) / "snapshot.devenv-snapshot"
                dump_database(project, target, target.dbname, key, steps, f"ci-{profile}",
                              path, container)
                push_file(project, remote, path, reporter)
    except _Skipped:
        return False
    return True
