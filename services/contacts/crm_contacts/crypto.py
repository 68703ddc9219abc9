"""Per-tenant encryption of sensitive custom field values (AES-256-GCM).

Each tenant schema holds one random data key, stored wrapped (encrypted) by the
service master key; dropping the tenant schema destroys the key with the data.
Ciphertexts bind the tenant, record and field as associated data, so a value
copied to another record or tenant does not decrypt.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections import OrderedDict

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.fields.repository import DataKeyRepository
from crm_lib.http import ProblemError

_CACHE_SIZE = 1024
_keys: OrderedDict[tuple[bytes, uuid.UUID], bytes] = OrderedDict()


def load_master_key(encoded: str | None) -> bytes | None:
    if not encoded:
        return None
    key = base64.b64decode(encoded)
    if len(key) != 32:
        raise ValueError("CRM_CONTACTS_MASTER_KEY must be base64 of 32 bytes")
    return key


class TenantCipher:
    def __init__(self, session: AsyncSession, tenant_id: uuid.UUID, master: bytes | None) -> None:
        self.session = session
        self.tenant_id = tenant_id
        self.master = master

    async def _data_key(self) -> bytes:
        if self.master is None:
            raise ProblemError(409, "Encryption at rest is not configured for this service.")
        cache_key = (self.master, self.tenant_id)
        if (key := _keys.get(cache_key)) is not None:
            _keys.move_to_end(cache_key)
            return key
        wrapper = AESGCM(self.master)
        keys = DataKeyRepository(self.session)
        row = await keys.wrapped_key()
        if row is None:
            fresh = AESGCM.generate_key(bit_length=256)
            nonce = os.urandom(12)
            wrapped = nonce + wrapper.encrypt(nonce, fresh, self.tenant_id.bytes)
            await keys.add_if_none(wrapped)
            # A concurrent first writer may have won: read back whichever key is stored.
            row = await keys.wrapped_key()
        assert row is not None
        key = wrapper.decrypt(row[:12], row[12:], self.tenant_id.bytes)
        _keys[cache_key] = key
        if len(_keys) > _CACHE_SIZE:
            _keys.popitem(last=False)
        return key

    def _aad(self, record_id: uuid.UUID, key: str) -> bytes:
        return self.tenant_id.bytes + record_id.bytes + key.encode()

    async def encrypt(self, record_id: uuid.UUID, key: str, plaintext: str) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(await self._data_key()).encrypt(
            nonce, plaintext.encode(), self._aad(record_id, key)
        )
        return base64.b64encode(nonce + sealed).decode()

    async def decrypt(self, record_id: uuid.UUID, key: str, token: str) -> str:
        raw = base64.b64decode(token)
        plain = AESGCM(await self._data_key()).decrypt(
            raw[:12], raw[12:], self._aad(record_id, key)
        )
        return plain.decode()


#: What roles without access see of a sensitive value: that there is one, nothing of it
#: (not its length, not its last characters).
MASK = "••••"
