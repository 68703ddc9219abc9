"""The log-scanning plugin (crm_dev.testing_logs) finds what it is meant to find.

The suite's own scan passes when nothing leaks, so these tests show it can fail: fake
secrets are logged into logs of their own (never this session's, which is scanned at the
end) and the scanner, and a whole pytest session with the plugin, must report them by
file, line and kind without printing them.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from crm_dev.testing_logs import (
    PATTERNS,
    SecretScanner,
    json_file_handler,
    log_files,
    session_log_path,
)
from crm_lib.telemetry import log_processors

# Built at run time so that no secret-shaped literal sits in a log by accident.
FAKE_JWT = ".".join(["eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9", "eyJzdWIiOiJ1c2VyOngifQ", "c2ln"])
FAKE_API_KEY = "crm_" + "live_" + "AbCdEfGh1234" + "_" + "x" * 32 + "Zz0000"
FAKE_REFRESH = "0123456789abcdef" * 2 + "." + "Q" * 43
FAKE_URL = "redis://default:" + "hunter2hunter2" + "@127.0.0.1:6379/0"
FAKE_PASSWORD = "Fake-Password-" + "for-the-scan-42"
FAKE_CLIENT_SECRET = "aB3" * 16


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory outside the session's temp dir (whose logs are scanned at the end)."""
    with tempfile.TemporaryDirectory(prefix="crm-log-scan-") as folder:
        yield Path(folder)


def test_the_session_log_is_written_and_scanned() -> None:
    path = session_log_path()
    assert path is not None and path.exists()
    structlog.get_logger("crm.tests").info("log_scan.probe", harmless=True)
    logging.getLogger("crm.tests.stdlib").info("a stdlib record at INFO")
    text = path.read_text()
    assert "log_scan.probe" in text
    assert "a stdlib record at INFO" in text


def test_scanner_finds_every_kind_without_showing_it(outside: Path) -> None:
    log_path = outside / "service.log"
    # A structlog logger of its own, with the services' processors and JSON lines.
    with log_path.open("w") as handle:
        service_log = structlog.wrap_logger(
            structlog.PrintLogger(file=handle),
            processors=[*log_processors(), structlog.processors.JSONRenderer()],
        )
        service_log.info("harmless", user="ada@example.com", key_prefix="crm_live_AbCdEfGh1234")
        service_log.warning("auth.header", authorization=f"Bearer {FAKE_JWT}")  # line 2
        service_log.info("apikey", key=FAKE_API_KEY)  # line 3
        service_log.info("refresh", token=FAKE_REFRESH)  # line 4
        service_log.info("config", redis_url=FAKE_URL)  # line 5
        service_log.error("login.failed", body={"password": FAKE_PASSWORD + "é"})  # line 6
        service_log.info("oauth", client_secret=FAKE_CLIENT_SECRET)  # line 7
        # And a stdlib record, as the plugin writes them (private logger: not this session's).
        lib = logging.getLogger("crm.tests.leaky")
        lib.propagate = False
        handler = json_file_handler(handle)
        lib.addHandler(handler)
        try:
            lib.warning("token %s", FAKE_JWT)  # line 8
        finally:
            lib.removeHandler(handler)
    scanner = SecretScanner([FAKE_PASSWORD])
    findings = scanner.scan(log_files(outside))
    by_line = {(f.line, f.kind) for f in findings}
    assert by_line == {
        (2, "jwt"),
        (3, "api key"),
        (4, "opaque token"),
        (5, "url credentials"),
        (6, "known secret (password, client secret or sensitive value)"),
        (7, "oauth client secret"),
        (8, "jwt"),
    }
    for finding in findings:
        shown = str(finding)
        assert str(log_path) in shown
        for secret in (
            FAKE_JWT,
            FAKE_API_KEY,
            FAKE_REFRESH,
            FAKE_URL,
            FAKE_PASSWORD,
            FAKE_CLIENT_SECRET,
        ):
            assert secret not in shown


def test_escaped_json_does_not_hide_a_literal() -> None:
    secret = 'Pass"wörd-with-escapes'
    line = structlog.processors.JSONRenderer()(None, "info", {"event": "x", "pw": secret})
    assert secret not in line  # escaped by the renderer
    assert SecretScanner([secret]).scan_line(str(line))


def test_log_files_are_found_in_server_dirs(outside: Path) -> None:
    (outside / "servers0" / "pg").mkdir(parents=True)
    (outside / "servers0" / "pg" / "postgres.log").write_text("x\n")
    (outside / "servers0" / "pg" / "log").mkdir()
    (outside / "servers0" / "pg" / "log" / "postgresql-Mon.csv").write_text("x\n")
    (outside / "servers0" / "pg" / "PG_VERSION").write_text("16\n")
    names = {p.name for p in log_files(outside)}
    assert names == {"postgres.log", "postgresql-Mon.csv"}


def test_patterns_leave_ordinary_lines_alone() -> None:
    ordinary = [
        '{"event": "api_key.created", "prefix": "crm_live_AbCdEfGh1234", "tenant": "t"}',
        '{"event": "http.unhandled", "path": "/api/v1/contacts", "error": "ValueError"}',
        '{"url": "postgresql://127.0.0.1:5432/crm", "event": "db"}',
        '{"event": "tenant", "id": "0123456789abcdef0123456789abcdef"}',
        '{"event": "hash", "sha256": "' + "0123456789abcdef" * 4 + '"}',
        '{"event": "client", "client_id": "crmc_AbCdEfGhIjKlMnOpQrStUvWx"}',
    ]
    scanner = SecretScanner(["Correct-Horse-42-battery"])
    for line in ordinary:
        assert scanner.scan_line(line) == [], line
    assert set(PATTERNS) == {
        "jwt",
        "api key",
        "opaque token",
        "url credentials",
        "oauth client secret",
    }


INNER_TEST = textwrap.dedent(
    """
    import logging

    from crm_lib.telemetry import get_logger
    from crm_dev.testing_logs import remember_secret


    def test_leaks(tmp_path_factory):
        password = remember_secret(PASSWORD)
        get_logger("leaky").warning("login.failed", password=password)
        logging.getLogger("leaky.lib").warning("header: Bearer %s", JWT)
        server = tmp_path_factory.mktemp("servers") / "redis"
        server.mkdir()
        (server / "redis.log").write_text("ok\\nAUTH " + API_KEY + "\\n")
    """
)

CLEAN_TEST = textwrap.dedent(
    """
    from crm_lib.telemetry import get_logger


    def test_clean():
        get_logger("fine").warning("nothing.secret", user="ada@example.com")
    """
)


def run_session(outside: Path, body: str) -> subprocess.CompletedProcess[str]:
    test_file = outside / "test_inner.py"
    test_file.write_text(
        f"PASSWORD = {FAKE_PASSWORD!r}\nJWT = {FAKE_JWT!r}\nAPI_KEY = {FAKE_API_KEY!r}\n" + body
    )
    (outside / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(  # noqa: S603 - our interpreter, our test file
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "crm_dev.testing_logs",
            "-p",
            "no:cacheprovider",
            "-q",
            "--rootdir",
            str(outside),
            "-c",
            str(outside / "pytest.ini"),
            "--basetemp",
            str(outside / "basetemp"),
            str(test_file),
        ],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_session_that_logs_secrets_fails(outside: Path) -> None:
    result = run_session(outside, INNER_TEST)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "1 passed" in output  # the test passed: the scan failed the session
    assert "secrets in logs" in output
    assert "test-process.log:" in output and "redis.log:2: api key" in output
    assert "jwt" in output and "known secret" in output
    for secret in (FAKE_PASSWORD, FAKE_JWT, FAKE_API_KEY):
        assert secret not in output


def test_a_clean_session_passes(outside: Path) -> None:
    result = run_session(outside, CLEAN_TEST)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "log scan: no secret" in output


def test_log_lines_reach_the_sink_not_only_stderr() -> None:
    """The telemetry sink used by the plugin receives lines below the console level."""
    from crm_lib.telemetry import add_log_sink

    sink = io.StringIO()
    remove = add_log_sink(sink, logging.DEBUG)
    try:
        structlog.get_logger("crm.tests").info("sink.probe")
    finally:
        remove()
    assert "sink.probe" in sink.getvalue()


def test_fixture_values_give_their_secrets() -> None:
    from dataclasses import dataclass as plain

    from pydantic import BaseModel, SecretStr

    from crm_dev.testing_logs import harvest_secrets, remembered_secrets

    @plain
    class User:
        name: str
        password: str

    @plain
    class Server:
        url: str
        admin_password: str
        passwords: dict[str, str]
        users: list[User]

    class Settings(BaseModel):
        service_name: str
        internal_token: SecretStr

    tag = os.urandom(6).hex()
    server = Server(
        url="nats://127.0.0.1:4222",
        admin_password=f"admin-{tag}",
        passwords={"contacts": f"contacts-{tag}"},
        users=[User(name=f"user-name-{tag}", password=f"user-pw-{tag}")],
    )
    harvest_secrets(server)
    harvest_secrets(Settings(service_name=f"service-{tag}", internal_token=SecretStr(f"tok-{tag}")))
    known = remembered_secrets()
    assert {f"admin-{tag}", f"contacts-{tag}", f"user-pw-{tag}", f"tok-{tag}"} <= known
    assert not {f"user-name-{tag}", f"service-{tag}", "nats://127.0.0.1:4222"} & known


def test_the_session_servers_passwords_are_watched(
    pg_server: Any, redis_server: Any, nats_server: Any
) -> None:
    from crm_dev.testing_logs import remembered_secrets

    known = remembered_secrets()
    assert pg_server.password in known
    assert redis_server.password in known
    assert nats_server.admin_password in known
    assert all(user.password in known for user in getattr(nats_server, "users", []))
