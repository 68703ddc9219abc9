"""Wire shapes of merges."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec

ChoiceKey = Annotated[str, msgspec.Meta(min_length=1, max_length=120)]


class MergeRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Merge ``loser_ids`` into ``winner_id``.

    ``choices`` picks, per field, the record whose value the merged record keeps
    (``first_name``, ``owner_id``, ``custom_fields.<key>``, ``email``/``phone`` for
    the primary address ...). Unchosen fields keep the winner's value, or the first
    loser's when the winner has none. Emails, phones, tags and company links are
    unioned; activities move to the winner.
    """

    winner_id: uuid.UUID
    loser_ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=10)]
    choices: dict[ChoiceKey, uuid.UUID] = msgspec.field(default_factory=dict)
