"""The worker's job runner for imports, reverts and exports.

Starting a job commits the job row and a ``contacts.import.queued`` /
``contacts.export.queued`` event in one transaction; the ``contacts-jobs``
subscription turns the event into a wake-up for the runner. The runner leases
the job (``lease_token``/``lease_until`` on the row), then runs it step by step,
each step one transaction that renews the lease and moves the checkpoint. If a
worker dies, its lease runs out and the periodic sweep over every tenant (and
every worker start) picks the job up again from its checkpoint. A failing step
rolls back, is retried after ``job_retry_seconds`` and fails the job after
``job_max_attempts`` consecutive failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from sqlalchemy import func, select

from crm_contacts.exports.jobs import export_step
from crm_contacts.imports.jobs import Lookahead, describe, import_step, revert_step
from crm_contacts.imports.processor import DryState
from crm_contacts.imports.repository import ImportRepository
from crm_contacts.models import ExportJob, ImportJob
from crm_contacts.records.http import contacts_settings
from crm_contacts.settings import ContactsSettings
from crm_lib.events import EventContext, Subscription
from crm_lib.platform_tables import TenantRegistryRow
from crm_lib.service import ServiceRuntime
from crm_lib.telemetry import get_logger

log = get_logger("crm.contacts.jobs")
QUEUED_EVENTS = ("contacts.import.queued", "contacts.export.queued")


class JobRunner:
    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        self.settings: ContactsSettings = contacts_settings(runtime)
        self.wake: asyncio.Queue[uuid.UUID] = asyncio.Queue()
        self.busy = False

    def notify(self, tenant_id: uuid.UUID) -> None:
        self.wake.put_nowait(tenant_id)

    def notify_later(self, tenant_id: uuid.UUID, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.notify, tenant_id)

    async def tenants(self) -> list[uuid.UUID]:
        async with self.runtime.db.platform_session() as session:
            rows = await session.scalars(
                select(TenantRegistryRow.tenant_id).where(
                    TenantRegistryRow.status.not_in(("deleted", "deprovisioned", "provisioning"))
                )
            )
            return list(rows)

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
        for model in (ImportJob, ExportJob):
            while True:
                token = uuid.uuid4()
                async with self.runtime.db.tenant_session(tenant_id) as session:
                    job = await ImportRepository(session).claim(
                        model, token, self.settings.job_lease_seconds
                    )
                    job_id = job.id if job is not None else None
                if job_id is None:
                    break
                await self.run_job(tenant_id, model, job_id, token)

    async def run_job(
        self, tenant_id: uuid.UUID, model: Any, job_id: uuid.UUID, token: uuid.UUID
    ) -> None:
        ahead = Lookahead()
        try:
            await self._steps(tenant_id, model, job_id, token, ahead)
        finally:
            ahead.cancel()

    async def _steps(
        self,
        tenant_id: uuid.UUID,
        model: Any,
        job_id: uuid.UUID,
        token: uuid.UUID,
        ahead: Lookahead,
    ) -> None:
        dry: DryState | None = None
        first = True
        while True:
            try:
                async with self.runtime.db.tenant_session(tenant_id) as session:
                    job = (
                        await session.execute(
                            select(model).where(model.id == job_id).with_for_update()
                        )
                    ).scalar_one_or_none()
                    if job is None or job.lease_token != token:
                        return  # deleted, or another worker took over
                    if model is ExportJob:
                        done = await export_step(session, job, self.settings)
                    elif job.status in ("revert_queued", "reverting"):
                        done = await revert_step(session, job, self.settings)
                    else:
                        if job.dry_run:
                            if first:
                                # A dry run remembers earlier rows in memory: a resumed
                                # one starts over (it wrote nothing but its report).
                                dry = DryState()
                                await _restart_dry_run(session, job)
                            assert dry is not None
                        done = await import_step(session, job, self.settings, dry, ahead)
                    first = False
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
                job = (
                    await session.execute(select(model).where(model.id == job_id).with_for_update())
                ).scalar_one_or_none()
                if job is None or job.lease_token != token:
                    return
                values: dict[str, Any] = {"last_error": describe(exc), "updated_at": func.now()}
                if job.attempts >= settings.job_max_attempts:
                    values.update(status="failed", lease_token=None, lease_until=None)
                    values["finished_at"] = func.now()
                else:
                    values["lease_until"] = func.now() + func.make_interval(
                        0, 0, 0, 0, 0, 0, settings.job_retry_seconds
                    )
                await session.execute(
                    model.__table__.update().where(model.id == job_id).values(**values)
                )
                if "status" not in values:
                    self.notify_later(tenant_id, settings.job_retry_seconds + 0.05)


async def _restart_dry_run(session: Any, job: ImportJob) -> None:
    repo = ImportRepository(session)
    if job.checkpoint > 0 or job.counts:
        await repo.clear_results(job.id)
        await repo.set(job.id, checkpoint=0, counts={})
        job.checkpoint = 0
        job.counts = {}


def jobs_subscription(runner: JobRunner) -> Subscription:
    async def handle(ctx: EventContext) -> None:
        # Wake the runner once this message's transaction has committed.
        asyncio.get_running_loop().call_later(0.05, runner.notify, ctx.event.tenant_id)

    return Subscription(name="contacts-jobs", event_types=list(QUEUED_EVENTS), handler=handle)


def runner_of(runtime: ServiceRuntime) -> JobRunner:
    runner = runtime.extras.get("contacts_jobs")
    if runner is None:
        runner = runtime.extras["contacts_jobs"] = JobRunner(runtime)
    assert isinstance(runner, JobRunner)
    return runner
