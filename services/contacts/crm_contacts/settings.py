"""Contacts settings (prefix ``CRM_``; per-service overrides ``CRM_CONTACTS_...``)."""

from __future__ import annotations

from pydantic import SecretStr

from crm_lib.settings import PlatformSettings


class ContactsSettings(PlatformSettings):
    service_name: str = "contacts"
    # Base64 of 32 random bytes wrapping each tenant's data key for sensitive custom
    # fields. Unset: sensitive fields cannot be defined (never a built-in default key).
    contacts_master_key: SecretStr | None = None
    # Similar-name duplicate detection: trigram similarity of "first last" within a company.
    duplicate_name_similarity: float = 0.7
    # How long a merge can be undone.
    merge_undo_hours: int = 72
    # Typo tolerance of the search box (pg_trgm word similarity, 0..1; lower = fuzzier).
    search_word_similarity: float = 0.45
    # List pages returning at least this many records are written to the access audit.
    bulk_read_audit_rows: int = 200
    # Imports and exports (crm_contacts.imports / crm_contacts.exports).
    import_max_bytes: int = 100 * 1024 * 1024
    import_chunk_rows: int = 5000
    # Per-record contacts.contact.created/updated events only for files up to this many
    # rows; bigger imports announce one contacts.import.completed (docs/events.md).
    import_record_events_max: int = 1000
    # Worker: a job's lease (renewed every chunk), retry delay and attempts, and how
    # often every tenant is swept for jobs a dead worker left behind.
    job_lease_seconds: int = 120
    job_retry_seconds: float = 2.0
    job_max_attempts: int = 5
    job_sweep_seconds: float = 30.0
    export_page_rows: int = 500
