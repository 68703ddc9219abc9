"""Sends requested emails over SMTP (``CRM_SMTP_*``); retried by the consumer on failure."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from crm_identity.mail.service import EMAIL_REQUESTED
from crm_identity.settings import IdentitySettings
from crm_lib.events import EventContext, Subscription
from crm_lib.telemetry import get_logger

log = get_logger("crm.identity.mail")


def mail_subscription(settings: IdentitySettings) -> Subscription:
    async def send(ctx: EventContext) -> None:
        data = ctx.event.data
        if not settings.smtp_host:
            log.warning("mail.smtp_not_configured", kind=data.get("kind"), to=data.get("to"))
            return
        message = EmailMessage()
        message["From"] = settings.smtp_from
        message["To"] = data["to"]
        message["Subject"] = data["subject"]
        message["Message-ID"] = f"<{data['message_id']}@crm>"
        message["X-CRM-Tenant"] = str(ctx.event.tenant_id)
        message.set_content(data["body"])
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            start_tls=settings.smtp_starttls,
            timeout=10,
        )

    return Subscription(name="mailer", event_types=[EMAIL_REQUESTED], handler=send, scope="tenant")
