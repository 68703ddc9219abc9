"""pytest plugin: keep every log line of the test session and prove it holds no secret.

For the whole session this plugin writes every log record of the test process (all
structlog loggers at DEBUG and up, in the services' JSON line format, and every stdlib
logger at INFO and up as JSON lines too) to ``<basetemp>/logs/test-process.log``. When
the session ends (after the session fixtures stopped the embedded servers), it scans
that file and every other ``*.log`` file under the session's temp directory (the
PostgreSQL, NATS and Redis logs under the servers dir, ``crm up`` process logs, ...) for:

- JWTs (``eyJ...``), API keys (``crm_live_`` / ``crm_test_`` with their secret part),
  identity's opaque tokens (refresh, invitation, reset: ``<tenant hex>.<43 chars>``),
  OAuth client secrets (48 mixed-case alphanumerics) and credentials in URLs
  (``scheme://user:password@``);
- literal secrets the suites registered with :func:`remember_secret` (passwords of the
  factories, sensitive custom-field values, the test platform's internal tokens), and
  those carried by fixture values (:func:`harvest_secrets`: the embedded servers'
  passwords, ``SecretStr`` settings such as the internal token and NATS passwords).

Any hit fails the session (exit status 1) with a report of the file, the line and the
kind of secret; the secret itself is never printed. Load it next to ``crm_dev.testing``:
``pytest_plugins = ["crm_dev.testing", "crm_dev.testing_logs"]``.

The test client's own ``httpx``/``httpcore`` request lines are not kept: they are the
client's view of the URLs it called (the platform's processes never write them), and
its INFO line per request is most of the volume.
"""

from __future__ import annotations

import json
import logging
import os
import re
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pytest

from crm_lib.telemetry import add_log_sink

#: Secret shapes, by kind. Tokens forged by tests (alg ``none``: empty signature) count too:
#: a token in a log is a leak whatever it is worth.
PATTERNS: dict[str, re.Pattern[str]] = {
    "jwt": re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    # crm_identity.security.new_api_key: crm_<env>_<12 public>_<32 secret><6 checksum>.
    # The public part alone (``crm_live_<12>``) is a display prefix, not a secret.
    "api key": re.compile(r"crm_(?:live|test)_[A-Za-z0-9]{12}_[A-Za-z0-9]{20,}"),
    # crm_identity.security.new_tenant_token: <tenant uuid hex>.<random_secret(43)>
    # (refresh tokens, invitation and password-reset tokens).
    "opaque token": re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{32}\.[A-Za-z0-9]{43}(?![A-Za-z0-9])"),
    "url credentials": re.compile(r"[a-z][a-z0-9+.-]*://[^\s/:@\"']*:[^\s/@\"']+@"),
    # crm_identity.oauth: client secrets are random_secret(48), mixed-case alphanumerics
    # (a hex digest never has an upper-case letter).
    "oauth client secret": re.compile(
        r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9]{0,47}[A-Z])(?=[A-Za-z0-9]{0,47}[a-z])"
        r"[A-Za-z0-9]{48}(?![A-Za-z0-9_-])"
    ),
}

#: Shorter literals are not tracked: they would match ordinary words.
MIN_SECRET_LENGTH = 8

_secrets: set[str] = set()


def remember_secret(value: Any) -> Any:
    """Register a literal that must never appear in a log; returns ``value`` unchanged.

    Use it in factories for passwords, client secrets and sensitive custom-field values:
    ``password = remember_secret("Correct-Horse-42-battery")``.
    """
    if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
        _secrets.add(value)
    return value


def remembered_secrets() -> frozenset[str]:
    return frozenset(_secrets)


_SECRET_NAME = re.compile(r"password|secret|token|master_key|api_key", re.IGNORECASE)


def harvest_secrets(value: Any, *, depth: int = 3, secret: bool = False) -> None:
    """Remember the secrets a fixture value carries, without knowing its type.

    ``SecretStr`` values (settings' ``internal_token``, ``nats_password``, ...), and the
    strings under a name that says password/secret/token: the embedded servers'
    ``password``/``admin_password``, the NATS ``passwords`` per service, their users.
    """
    if value is None or isinstance(value, (int, float, bool, bytes)):
        return
    from pydantic import BaseModel, SecretStr

    if isinstance(value, str):
        if secret:
            remember_secret(value)
        return
    if isinstance(value, SecretStr):
        remember_secret(value.get_secret_value())
        return
    if depth < 0:
        return
    if isinstance(value, BaseModel):
        items = [(name, getattr(value, name, None)) for name in type(value).model_fields]
    elif isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = [("", item) for item in value]
    else:
        attributes = getattr(value, "__dict__", None)
        if not isinstance(attributes, dict):
            return
        items = list(attributes.items())
    for name, item in items[:200]:
        named = secret or bool(_SECRET_NAME.search(str(name)))
        harvest_secrets(item, depth=depth - 1, secret=named)


def _strings(line: str) -> Iterator[str]:
    """Every string (keys and values) of a JSON log line; nothing if it is not JSON."""
    try:
        stack: list[Any] = [json.loads(line)]
    except ValueError:
        return
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    kind: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}"


class SecretScanner:
    """Finds secrets in log files: the shapes of :data:`PATTERNS` plus known literals."""

    def __init__(
        self,
        literals: Iterable[str] = (),
        patterns: dict[str, re.Pattern[str]] | None = None,
    ) -> None:
        self.patterns = PATTERNS if patterns is None else patterns
        words = sorted({w for w in literals if len(w) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._literals = re.compile("|".join(map(re.escape, words))) if words else None

    def scan_line(self, line: str) -> list[str]:
        kinds = [kind for kind, pattern in self.patterns.items() if pattern.search(line)]
        if self._literals is not None and self._literals.search(line):
            kinds.append("known secret (password, client secret or sensitive value)")
        # JSON escapes (\u00e9, \") could hide a literal: look at the decoded strings too.
        if not kinds and "\\" in line and self._literals is not None:
            decoded = "\n".join(_strings(line))
            if decoded and self._literals.search(decoded):
                kinds.append("known secret (password, client secret or sensitive value)")
        return kinds

    def scan_file(self, path: Path) -> Iterator[Finding]:
        try:
            handle = path.open("r", encoding="utf-8", errors="replace")
        except OSError:
            return
        with handle:
            for number, line in enumerate(handle, 1):
                for kind in self.scan_line(line):
                    yield Finding(path, number, kind)

    def scan(self, paths: Iterable[Path]) -> list[Finding]:
        findings: list[Finding] = []
        for path in paths:
            findings.extend(self.scan_file(path))
        return findings


def log_files(root: Path) -> list[Path]:
    """Every log file under ``root`` (``*.log``, and the files of ``log``/``logs`` dirs)."""
    found: set[Path] = set()
    for dirpath, _dirnames, filenames in os.walk(root):
        folder = Path(dirpath)
        in_log_dir = folder.name in ("log", "logs", "pg_log")
        for name in filenames:
            if name.endswith(".log") or (in_log_dir and not name.startswith(".")):
                found.add(folder / name)
    return sorted(found)


# --------------------------------------------------------------------------- stdlib records


class JsonLineFormatter(logging.Formatter):
    """A stdlib record as a JSON line shaped like the services' structlog lines.

    Exception text is kept verbatim (the scan must see what a library would print).
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "event": record.getMessage(),
            "logger": record.name,
            "level": record.levelname.lower(),
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
        }
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info))
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str)


class _NotTheTestClient(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(("httpx", "httpcore"))


def json_file_handler(stream: IO[str], level: int = logging.INFO) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setLevel(level)
    handler.setFormatter(JsonLineFormatter())
    handler.addFilter(_NotTheTestClient())
    return handler


# --------------------------------------------------------------------------- the plugin


#: Secrets of the test platform itself (crm_dev.testing), always watched.
def _platform_secrets() -> list[str]:
    from crm_dev import testing

    values = ["test-internal-token", "test-operator-token"]
    master = getattr(testing, "TEST_MASTER_KEY", None)
    if isinstance(master, str):
        values.append(master)
    return values


class SessionLogs:
    """The session's log file, the hooks into both logging systems, the final scan."""

    def __init__(self, basetemp: Path) -> None:
        self.basetemp = basetemp
        self.path = basetemp / "logs" / "test-process.log"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.stream: IO[str] = self.path.open("a", encoding="utf-8")
        self._remove_sink = add_log_sink(self.stream, logging.DEBUG)
        self.handler = json_file_handler(self.stream, logging.INFO)
        root = logging.getLogger()
        self._root_level = root.level
        root.addHandler(self.handler)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        # The test client's per-request INFO lines are not kept (see the module doc): keep
        # them out of pytest's captured-log reports too, now that the root is at INFO.
        self._client_levels: dict[str, int] = {}
        for name in ("httpx", "httpcore"):
            client_logger = logging.getLogger(name)
            self._client_levels[name] = client_logger.level
            if client_logger.level == logging.NOTSET or client_logger.level < logging.WARNING:
                client_logger.setLevel(logging.WARNING)
        self.findings: list[Finding] = []
        self.scanned: list[Path] = []

    def attach(self) -> None:
        """(Re)attach to the root logger: building a Litestar app configures logging again
        and replaces the root's handlers, which would silently drop stdlib records."""
        root = logging.getLogger()
        if self.handler not in root.handlers:
            root.addHandler(self.handler)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)

    def close(self) -> None:
        self._remove_sink()
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self._root_level)
        for name, level in self._client_levels.items():
            logging.getLogger(name).setLevel(level)
        self.stream.close()

    def scan(self) -> list[Finding]:
        for value in _platform_secrets():
            remember_secret(value)
        self.scanned = log_files(self.basetemp)
        self.findings = SecretScanner(remembered_secrets()).scan(self.scanned)
        return self.findings


_session_logs: SessionLogs | None = None


def session_log_path() -> Path | None:
    """The file this session's log lines go to (``None`` before the session starts)."""
    return _session_logs.path if _session_logs is not None else None


def _basetemp(config: pytest.Config) -> Path:
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None:
        factory = pytest.TempPathFactory.from_config(config, _ispytest=True)
    return Path(factory.getbasetemp())


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    global _session_logs
    _session_logs = SessionLogs(_basetemp(session.config))
    # The services' line format from the first log line on (fixtures configure it again).
    from crm_lib.settings import PlatformSettings
    from crm_lib.telemetry import setup_logging

    setup_logging(PlatformSettings(service_name="tests", log_level="WARNING", log_json=True))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    if _session_logs is not None:
        _session_logs.attach()


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: Any) -> Any:
    """Every fixture value's secrets (server passwords, settings' tokens) are watched."""
    result = yield
    if _session_logs is not None:
        _session_logs.attach()
    try:
        harvest_secrets(result)
    except Exception:  # noqa: S110 - never break a fixture over the scan's bookkeeping
        pass
    return result


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    global _session_logs
    logs = _session_logs
    if logs is None:
        return
    logs.close()
    if session.config.option.collectonly:
        return
    findings = logs.scan()
    if findings:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    logs = _session_logs
    if logs is None or not logs.scanned:
        return
    if not logs.findings:
        terminalreporter.write_line(
            f"log scan: no secret in {len(logs.scanned)} log file(s) under {logs.basetemp}"
        )
        return
    terminalreporter.section("secrets in logs", sep="=", red=True, bold=True)
    terminalreporter.write_line(
        f"{len(logs.findings)} secret(s) found in the logs the test processes wrote "
        "(file:line: kind; the values are not shown):",
        red=True,
    )
    for finding in logs.findings[:200]:
        terminalreporter.write_line(f"  {finding}")
    if len(logs.findings) > 200:
        terminalreporter.write_line(f"  ... and {len(logs.findings) - 200} more")
