"""All SQL of the job mechanism, for any job table (``ImportJob``, ``ExportJob``): lease
claims, locking a job, moving its row, failed attempts, its access-audit row, and the
tenants the sweep visits."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.models import AccessAudit
from crm_lib.platform_tables import TenantRegistryRow

RUNNABLE = ("queued", "running", "revert_queued", "reverting")


def lease_expiry(seconds: int) -> Any:
    """The ``lease_until`` of a lease taken or renewed now."""
    return func.now() + text(f"interval '{int(seconds)} seconds'")


def retry_at(seconds: float) -> Any:
    """The ``lease_until`` of a failed attempt: the job is retried after ``seconds``."""
    return func.now() + func.make_interval(0, 0, 0, 0, 0, 0, seconds)


class JobRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(self, model: Any, token: uuid.UUID, lease_seconds: int) -> Any | None:
        """Lease the oldest runnable job nobody holds (or whose holder died)."""
        candidate = (
            select(model.id)
            .where(
                model.status.in_(RUNNABLE),
                or_(model.lease_until.is_(None), model.lease_until < func.now()),
            )
            .order_by(model.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        stmt = (
            update(model)
            .where(model.id == candidate)
            .values(
                lease_token=token,
                lease_until=lease_expiry(lease_seconds),
                attempts=model.attempts + 1,
                updated_at=func.now(),
            )
            .returning(model)
            .execution_options(synchronize_session=False)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def lock(self, model: Any, job_id: uuid.UUID) -> Any | None:
        """The job row, locked for this transaction."""
        return (
            await self.session.execute(select(model).where(model.id == job_id).with_for_update())
        ).scalar_one_or_none()

    async def update(self, model: Any, job_id: uuid.UUID, values: dict[str, Any]) -> None:
        await self.session.execute(
            model.__table__.update().where(model.id == job_id).values(**values)
        )

    async def record_failure(
        self, model: Any, job_id: uuid.UUID, error: str, *, final: bool, retry_seconds: float
    ) -> None:
        """A failed attempt: the job fails for good (``final``) or is retried after
        ``retry_seconds`` (its lease runs until then)."""
        values: dict[str, Any] = {"last_error": error, "updated_at": func.now()}
        if final:
            values.update(status="failed", lease_token=None, lease_until=None)
            values["finished_at"] = func.now()
        else:
            values["lease_until"] = retry_at(retry_seconds)
        await self.update(model, job_id, values)

    async def audit(self, **values: Any) -> None:
        await self.session.execute(insert(AccessAudit).values(**values))


async def tenants_with_jobs(session: AsyncSession) -> list[uuid.UUID]:
    """Tenants whose jobs the sweep visits (platform session): all but those being
    provisioned or gone."""
    rows = await session.scalars(
        select(TenantRegistryRow.tenant_id).where(
            TenantRegistryRow.status.not_in(("deleted", "deprovisioned", "provisioning"))
        )
    )
    return list(rows)
