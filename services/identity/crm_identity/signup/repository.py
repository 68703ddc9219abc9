"""The writes of a sign-up that belong to no other module: the owner row (on the new
tenant's freshly provisioned schema), its login-directory entry and identity's registry
replica row."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from crm_identity.models import LoginDirectory, User
from crm_lib.platform_tables import TenantRegistryRow


class SignupRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert_owner(self, conn: AsyncConnection, **values: Any) -> Row[Any]:
        """The owner, written through ``conn`` (bound to the new tenant's schema)."""
        return (await conn.execute(insert(User).values(**values).returning(User))).one()

    async def add_login(self, email: str, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
        await self.session.execute(
            insert(LoginDirectory).values(email=email, tenant_id=tenant_id, user_id=user_id)
        )

    async def register_replica(
        self, tenant_id: uuid.UUID, slug: str, schema_name: str, schema_version: str
    ) -> None:
        """Identity's own registry replica row: its schema exists, so it is active."""
        await self.session.execute(
            insert(TenantRegistryRow).values(
                tenant_id=tenant_id,
                slug=slug,
                status="active",
                schema_name=schema_name,
                schema_version=schema_version,
            )
        )
