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
