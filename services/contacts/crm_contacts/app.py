"""The contacts service: definition, app factory and worker entry point."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar

from crm_contacts.activities.controllers import ActivityController, TimelineController
from crm_contacts.activities.handlers import timeline_subscription
from crm_contacts.audit.controllers import AuditController
from crm_contacts.companies.controllers import CompanyController
from crm_contacts.contacts.controllers import ContactController
from crm_contacts.fields.controllers import CustomFieldController
from crm_contacts.members.controllers import TeamRuleController
from crm_contacts.members.handlers import member_subscription
from crm_contacts.models import TenantBase
from crm_contacts.settings import ContactsSettings
from crm_contacts.tags.controllers import TagController
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
        {"encryption_keys", "contacts.sensitive_fields", "companies.sensitive_fields"}
    ),
)


def subscriptions(_runtime: ServiceRuntime) -> list[Subscription]:
    return [member_subscription(), timeline_subscription()]


SERVICE = ServiceDefinition(
    name="contacts",
    schema=SCHEMA,
    route_handlers=[
        ContactController,
        CompanyController,
        TagController,
        CustomFieldController,
        TeamRuleController,
        ActivityController,
        TimelineController,
        AuditController,
    ],
    subscriptions=subscriptions,
    settings_class=ContactsSettings,
)


def create_app() -> Litestar:
    return build_app(SERVICE)
