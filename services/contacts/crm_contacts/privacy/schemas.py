"""Wire shapes of GDPR requests."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec


class ExportRequest(msgspec.Struct, forbid_unknown_fields=True):
    contact_id: uuid.UUID


class ErasureRequest(msgspec.Struct, forbid_unknown_fields=True):
    contact_id: uuid.UUID
    #: Why (e.g. "Art. 17 request by email of 2025-03-01"): kept with the receipt.
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
