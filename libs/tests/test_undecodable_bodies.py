"""A JSON body that is not valid UTF-8 is a client error (400), and never reaches a log.

The decoder's exception quotes the offending bytes, so before the fix every service
answered 500 and logged ``repr(exc)``: a login or sign-up password in the log. These
tests send such bodies through the gateway and directly to identity and contacts, and
look at everything logged meanwhile (structlog lines, stdlib log records, stderr).
"""

from __future__ import annotations

import enum
import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import msgspec
import pytest
import pytest_asyncio
from litestar import post

from crm_dev.testing import RunningPlatform, served
from crm_dev.testing_logs import remember_secret
from crm_lib.http import create_app
from crm_lib.service import build_app
from crm_lib.telemetry import add_log_sink, describe_error, format_exception_safely

JSON = {"content-type": "application/json"}


def password() -> str:
    value = f"Pw-{uuid.uuid4().hex}-Undecodable"
    remember_secret(value)
    return value


def undecodable(template: str, secret: str) -> bytes:
    """``template`` with ``secret`` followed by bytes that are not UTF-8."""
    return template.encode().replace(b"SECRET", secret.encode() + b"\xff\xfe\xc3(")


@dataclass
class Logs:
    sink: io.StringIO
    caplog: pytest.LogCaptureFixture
    capfd: pytest.CaptureFixture[str]

    def text(self) -> str:
        out, err = self.capfd.readouterr()
        return "\n".join([self.sink.getvalue(), self.caplog.text, out, err])


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> Iterator[Logs]:
    sink = io.StringIO()
    remove = add_log_sink(sink, logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    try:
        yield Logs(sink, caplog, capfd)
    finally:
        remove()


@dataclass
class Direct:
    identity: httpx.AsyncClient
    contacts: httpx.AsyncClient


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def direct(platform: RunningPlatform) -> AsyncIterator[Direct]:
    """identity and contacts served on their own ports (no gateway in front)."""
    identity_rt = platform.runtime("identity")
    contacts_rt = platform.runtime("contacts")
    identity_app = build_app(
        platform.definitions["identity"], identity_rt.settings, runtime=identity_rt
    )
    async with served(identity_app) as identity_server:
        contacts_settings = contacts_rt.settings.model_copy(
            update={"identity_url": identity_server.url}
        )
        contacts_app = build_app(
            platform.definitions["contacts"], contacts_settings, runtime=contacts_rt
        )
        async with (
            served(contacts_app) as contacts_server,
            httpx.AsyncClient(base_url=identity_server.url, timeout=30) as identity,
            httpx.AsyncClient(base_url=contacts_server.url, timeout=30) as contacts,
        ):
            yield Direct(identity, contacts)


def assert_bad_request(r: httpx.Response, secret: str) -> None:
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == 400
    assert "UTF-8" in problem["detail"]
    assert secret not in r.text and "\\xff" not in r.text


def signup_body(secret: str) -> bytes:
    tag = uuid.uuid4().hex[:10]
    template = json.dumps(
        {
            "company_name": f"Acme {tag}",
            "admin_name": "Ada",
            "email": f"ada-{tag}@example.com",
            "password": "SECRET",
        }
    )
    return undecodable(template, secret)


def login_body(secret: str) -> bytes:
    return undecodable('{"email": "nobody@example.com", "password": "SECRET"}', secret)


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/signup"])
async def test_through_the_gateway(
    platform_gateway: httpx.AsyncClient, logs: Logs, path: str
) -> None:
    secret = password()
    body = login_body(secret) if path.endswith("login") else signup_body(secret)
    r = await platform_gateway.post(path, content=body, headers=JSON)
    assert_bad_request(r, secret)
    assert secret not in logs.text()


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/signup"])
async def test_directly_to_identity(direct: Direct, logs: Logs, path: str) -> None:
    secret = password()
    body = login_body(secret) if path.endswith("login") else signup_body(secret)
    r = await direct.identity.post(path, content=body, headers=JSON)
    assert_bad_request(r, secret)
    assert secret not in logs.text()


async def test_directly_to_contacts(direct: Direct, logs: Logs) -> None:
    owner_password = password()
    tag = uuid.uuid4().hex[:10]
    signed = await direct.identity.post(
        "/api/v1/signup",
        json={
            "company_name": f"Utf {tag}",
            "admin_name": "Ada",
            "email": f"ada-{tag}@example.com",
            "password": owner_password,
        },
    )
    assert signed.status_code == 201, signed.text
    auth = {"Authorization": f"Bearer {signed.json()['tokens']['access_token']}", **JSON}
    secret = password()
    for path, template in [
        ("/api/v1/contacts", '{"first_name": "Ada", "last_name": "SECRET"}'),
        ("/api/v1/companies", '{"name": "SECRET"}'),
        ("/api/v1/contacts", '{"first_name": "SECRET'),  # undecodable and truncated
        ("/api/v1/contacts", '{"SECRET": 1}'),  # in a key
    ]:
        r = await direct.contacts.post(path, content=undecodable(template, secret), headers=auth)
        if template.endswith('"SECRET'):
            # Either problem is right for a body that is both; neither may echo it.
            assert r.status_code == 400, r.text
            assert secret not in r.text
        else:
            assert_bad_request(r, secret)
    # Without a token too: the body may be decoded before authentication.
    r = await direct.contacts.post(
        "/api/v1/contacts", content=undecodable('{"first_name": "SECRET"}', secret), headers=JSON
    )
    assert r.status_code in (400, 401), r.text
    assert secret not in r.text
    assert secret not in logs.text()


def test_exception_text_never_reaches_a_log_line() -> None:
    """Unit level: the formatter keeps frames and types, drops messages (they quote input)."""
    secret = password()
    try:
        try:
            (secret.encode() + b"\xff").decode()
        except UnicodeDecodeError as exc:
            raise ValueError(f"bad password {secret}") from exc
    except ValueError as exc:
        text = format_exception_safely(exc)
        described = describe_error(exc)
    assert secret not in text and secret not in described
    assert "UnicodeDecodeError" in text and "ValueError" in text
    assert "test_undecodable_bodies.py" in text  # the frames are kept
    refused = ConnectionRefusedError(111, "Connection refused")
    assert "Connection refused" in describe_error(refused)


class ProbeRole(enum.Enum):
    admin = "admin"


class ProbeBody(msgspec.Struct):
    password: str
    role: ProbeRole = ProbeRole.admin


@post("/buggy")
async def probe_buggy(data: ProbeBody) -> dict[str, str]:
    raise RuntimeError(f"could not handle {data.password}")


@post("/typed")
async def probe_typed(data: ProbeBody) -> dict[str, str]:
    return {"ok": "yes"}


async def test_no_error_path_logs_the_body(logs: Logs) -> None:
    """A bug (500), bad JSON, a refused value, too deep a body: nothing of the body logged."""
    secret = password()
    app = create_app(service="log-probe", route_handlers=[probe_buggy, probe_typed], readiness={})
    async with served(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        r = await client.post("/buggy", json={"password": secret})
        assert r.status_code == 500 and secret not in r.text
        for body in [
            b'{"password": "' + secret.encode() + b'"',  # truncated
            b'{"password": "' + secret.encode() + b'", "role": "' + secret.encode() + b'"}',
            b'{"password": ' + secret.encode() + b"}",  # not JSON
            b'{"password": "x", "role": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        ]:
            r = await client.post("/typed", content=body, headers=JSON)
            assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    text = logs.text()
    assert "http.unhandled" in text  # the bug was logged...
    assert "RuntimeError" in text
    assert secret not in text  # ...without the body
