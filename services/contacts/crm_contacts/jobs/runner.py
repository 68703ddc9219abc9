"""The worker's job runner: one lease / sweep / checkpoint mechanism for every kind of job.

Starting a job commits the job row and its ``…queued`` event in one transaction; the
``contacts-jobs`` subscription turns the event into a wake-up for the runner. The
runner leases the job (``lease_token``/``lease_until`` on the row), then runs it step
by step, each step one transaction that renews the lease and moves the checkpoint. If
a worker dies, its lease runs out and the periodic sweep over every tenant (and every
worker start) picks the job up again from its checkpoint. A failing step rolls back,
is retried after ``job_retry_seconds`` and fails the job after ``job_max_attempts``
consecutive failures.

A kind of job (``JobKind``) brings its table, its queued event and its steps; the
worker composes the kinds (``crm_contacts.background``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.jobs.repository import JobRepository, tenants_with_jobs
from crm_contacts.records.http import contacts_settings
from crm_contacts.settings import ContactsSettings
from crm_lib.events import EventContext, Subscription
from crm_lib.http import ProblemError
from crm_lib.service import ServiceRuntime
from crm_lib.telemetry import describe_error, get_logger

log = get_logger("crm.contacts.jobs")


class JobSteps(Protocol):
    """One leased run of a job: ``step`` runs the step at the checkpoint inside the
    caller's transaction (True when the job is finished); ``close`` ends the run."""

    async def step(self, session: AsyncSession, job: Any) -> bool: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class JobKind:
    #: The job table (``status``, ``lease_token``, ``lease_until``, ``attempts`` …).
    model: Any
    #: The event that announces a queued job (wakes the runner).
    queued_event: str
    #: A new run of one leased job.
    start: Callable[[ContactsSettings], JobSteps]


def describe(exc: BaseException) -> str:
    """A failed attempt, for the job's ``last_error`` and the log: never database text or
    values (a SQL error quotes the row; issue 10). A problem gives its status, title and
    the fields it names; anything else ``crm_lib.telemetry.describe_error``."""
    if isinstance(exc, ProblemError):
        fields = [str(e.get("field")) for e in exc.errors or []][:10]
        where = f" ({', '.join(fields)})" if fields else ""
        title = exc.title or ("Validation failed" if exc.status_code == 422 else "Refused")
        return f"{exc.status_code} {title}{where}"[:1000]
    return describe_error(exc)[:1000]


class JobRunner:
    def __init__(self, runtime: ServiceRuntime, kinds: Sequence[JobKind]) -> None:
        self.runtime = runtime
        self.kinds = tuple(kinds)
        self.settings: ContactsSettings = contacts_settings(runtime)
        self.wake: asyncio.Queue[uuid.UUID] = asyncio.Queue()
        self.busy = False

    def notify(self, tenant_id: uuid.UUID) -> None:
        self.wake.put_nowait(tenant_id)

    def notify_later(self, tenant_id: uuid.UUID, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.notify, tenant_id)

    async def tenants(self) -> list[uuid.UUID]:
        async with self.runtime.db.platform_session() as session:
            return await tenants_with_jobs(session)

    async def sweep(self) -> None:
        for tenant_id in await self.tenants():
            await self.drain(tenant_id)

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = 0.0
        while not stop.is_set():
            try:
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + self.settings.job_sweep_seconds
                    await self.sweep()
                try:
                    tenant_id = await asyncio.wait_for(self.wake.get(), timeout=0.5)
                except TimeoutError:
                    continue
                await self.drain(tenant_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database away: keep going
                log.warning("jobs.loop_failed", error=describe(exc))
                await asyncio.sleep(1.0)

    async def drain(self, tenant_id: uuid.UUID) -> None:
        """Run every runnable job of one tenant."""
        for kind in self.kinds:
            while True:
                token = uuid.uuid4()
                async with self.runtime.db.tenant_session(tenant_id) as session:
                    job = await JobRepository(session).claim(
                        kind.model, token, self.settings.job_lease_seconds
                    )
                    job_id = job.id if job is not None else None
                if job_id is None:
                    break
                await self.run_job(tenant_id, kind, job_id, token)

    async def run_job(
        self, tenant_id: uuid.UUID, kind: JobKind, job_id: uuid.UUID, token: uuid.UUID
    ) -> None:
        steps = kind.start(self.settings)
        try:
            await self._steps(tenant_id, kind.model, job_id, token, steps)
        finally:
            steps.close()

    async def _steps(
        self,
        tenant_id: uuid.UUID,
        model: Any,
        job_id: uuid.UUID,
        token: uuid.UUID,
        steps: JobSteps,
    ) -> None:
        while True:
            try:
                async with self.runtime.db.tenant_session(tenant_id) as session:
                    job = await JobRepository(session).lock(model, job_id)
                    if job is None or job.lease_token != token:
                        return  # deleted, or another worker took over
                    done = await steps.step(session, job)
                if done:
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("jobs.step_failed", job=str(job_id), error=describe(exc))
                await self._failed(tenant_id, model, job_id, token, exc)
                return

    async def _failed(
        self,
        tenant_id: uuid.UUID,
        model: Any,
        job_id: uuid.UUID,
        token: uuid.UUID,
        exc: BaseException,
    ) -> None:
        settings = self.settings
        with contextlib.suppress(Exception):
            async with self.runtime.db.tenant_session(tenant_id) as session:
                repo = JobRepository(session)
                job = await repo.lock(model, job_id)
                if job is None or job.lease_token != token:
                    return
                final = job.attempts >= settings.job_max_attempts
                await repo.record_failure(
                    model,
                    job_id,
                    describe(exc),
                    final=final,
                    retry_seconds=settings.job_retry_seconds,
                )
                if not final:
                    self.notify_later(tenant_id, settings.job_retry_seconds + 0.05)


def jobs_subscription(runner: JobRunner) -> Subscription:
    async def handle(ctx: EventContext) -> None:
        # Wake the runner once this message's transaction has committed.
        asyncio.get_running_loop().call_later(0.05, runner.notify, ctx.event.tenant_id)

    return Subscription(
        name="contacts-jobs",
        event_types=[kind.queued_event for kind in runner.kinds],
        handler=handle,
    )
