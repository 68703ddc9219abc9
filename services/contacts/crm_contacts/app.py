"""The contacts service: definition, app factory and worker entry point."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from litestar import Litestar

from crm_contacts.activities.controllers import ActivityController, TimelineController
from crm_contacts.activities.handlers import timeline_subscription
from crm_contacts.audit.controllers import AuditController
from crm_contacts.background import jobs_subscription, runner_of
from crm_contacts.companies.controllers import CompanyContactsController, CompanyController
from crm_contacts.contacts.controllers import ContactController, ContactLinkController
from crm_contacts.exports.controllers import ExportController
from crm_contacts.fields.controllers import CustomFieldController
from crm_contacts.imports.controllers import ImportController
from crm_contacts.members.controllers import TeamRuleController
from crm_contacts.members.handlers import member_subscription
from crm_contacts.merges.controllers import (
    CompanyMergeController,
    ContactMergeController,
    MergeController,
)
from crm_contacts.models import TenantBase
from crm_contacts.privacy.controllers import GdprController
from crm_contacts.privacy.handlers import privacy_subscriptions
from crm_contacts.settings import ContactsSettings
from crm_contacts.tags.controllers import TagController
from crm_contacts.views.controllers import SavedViewController
from crm_lib.events import Subscription
from crm_lib.migrations import ServiceSchema, Track
from crm_lib.service import ServiceDefinition, ServiceRuntime, build_app

MIGRATIONS = Path(__file__).parent / "migrations"

SCHEMA = ServiceSchema(
    service="contacts",
    tenant_metadata=TenantBase.metadata,
    tenant_track=Track("contacts-tenant", MIGRATIONS / "tenant", per_tenant=True),
    # Wrapped data keys stay here: a tenant export must not carry them.
    export_exclude=frozenset(
        {
            "encryption_keys",
            "contacts.sensitive_fields",
            "companies.sensitive_fields",
            # Pre-merge values (sealed sensitive values among them) for undo only.
            "merges.snapshot",
            # Import uploads, before-images and export files: bulky working copies.
            "import_chunks",
            "import_updates",
            "export_chunks",
        }
    ),
)


def subscriptions(runtime: ServiceRuntime) -> list[Subscription]:
    return [
        member_subscription(),
        timeline_subscription(),
        *privacy_subscriptions(runtime),
        jobs_subscription(runner_of(runtime)),
    ]


def background(runtime: ServiceRuntime) -> list[Callable[[asyncio.Event], Awaitable[None]]]:
    # Import, revert and export jobs (crm_contacts.background).
    return [runner_of(runtime).run]


SERVICE = ServiceDefinition(
    name="contacts",
    schema=SCHEMA,
    route_handlers=[
        ContactController,
        ContactLinkController,
        CompanyController,
        CompanyContactsController,
        SavedViewController,
        TagController,
        CustomFieldController,
        TeamRuleController,
        ActivityController,
        TimelineController,
        AuditController,
        ContactMergeController,
        CompanyMergeController,
        MergeController,
        GdprController,
        ImportController,
        ExportController,
    ],
    subscriptions=subscriptions,
    background=background,
    settings_class=ContactsSettings,
)


def create_app() -> Litestar:
    return build_app(SERVICE)
