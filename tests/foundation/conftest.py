from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from crm_dev.testing import SettingsFactory, scratch_database_name
from crm_lib.registry import load_service
from crm_lib.service import prepare_database
from crm_lib.settings import PlatformSettings
from crm_lib.tenancy import Database


@pytest_asyncio.fixture(loop_scope="session")
async def scratch_settings(make_settings: SettingsFactory) -> PlatformSettings:
    """Contacts settings on a fresh, empty database of its own (platform tracks applied)."""
    settings = make_settings("contacts", database_name=scratch_database_name())
    await prepare_database(load_service("contacts"), settings)
    return settings


@pytest_asyncio.fixture(loop_scope="session")
async def scratch_db(scratch_settings: PlatformSettings) -> AsyncIterator[Database]:
    db = Database(scratch_settings)
    yield db
    await db.dispose()
