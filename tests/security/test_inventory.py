"""The suite knows every operation of the merged OpenAPI: no id it cannot fill."""

from __future__ import annotations

from tests.security.resources import FACTORIES
from tests.security.spec import Spec


async def test_every_id_has_a_factory(spec: Spec) -> None:
    """A new resource kind (path parameter or body id) needs a factory in resources.py."""
    assert len(spec.operations) > 100, len(spec.operations)
    missing = []
    for op in spec.operations:
        for name in op.unknown_params():
            missing.append(f"{op.key}: path parameter {name!r} has no known kind")
        for slot in op.id_slots():
            if slot.kind is None:
                missing.append(f"{op.key}: id at {slot.label()} has no known kind")
            elif slot.kind not in FACTORIES:
                missing.append(f"{op.key}: kind {slot.kind!r} ({slot.label()}) has no factory")
    assert not missing, "\n".join(missing)
