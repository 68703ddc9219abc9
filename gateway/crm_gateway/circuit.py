"""A circuit breaker per upstream service.

*Closed*: requests flow; consecutive failures (connect errors, timeouts, and 502/503/504
answered by the upstream itself) are counted, any other answer resets the count.
After ``circuit_failure_threshold`` failures the circuit *opens*: the gateway answers
503 with ``Retry-After`` at once, without touching the upstream. After
``circuit_cooldown_seconds`` it is *half-open*: exactly one request is let through as a
probe (others still get 503); its success closes the circuit, its failure opens it for
another cooldown. A probe that ends without a verdict (client gone, body too large)
lets the next request probe. Each upstream has its own breaker.
"""

from __future__ import annotations

import math
import time

from crm_gateway.metrics import CIRCUIT_OPEN
from crm_lib.telemetry import get_logger

log = get_logger("crm.gateway.circuit")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    __slots__ = (
        "cooldown",
        "failures",
        "opened_at",
        "probe_started",
        "service",
        "state",
        "threshold",
    )

    def __init__(self, service: str, threshold: int, cooldown: float) -> None:
        self.service = service
        self.threshold = max(1, threshold)
        self.cooldown = cooldown
        self.state = CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.probe_started = 0.0

    def admit(self) -> int | None:
        """``None`` if the request may go upstream, else the ``Retry-After`` seconds."""
        if self.state == CLOSED:
            return None
        now = time.monotonic()
        if self.state == OPEN:
            waited = now - self.opened_at
            if waited < self.cooldown:
                return max(1, math.ceil(self.cooldown - waited))
            self.state = HALF_OPEN
            self.probe_started = now
            return None  # this request is the probe
        # half-open: one probe is in flight; a probe that never reported is replaced
        if now - self.probe_started > self.cooldown:
            self.probe_started = now
            return None
        return 1

    def success(self) -> None:
        if self.state != CLOSED:
            log.warning("gateway.circuit_closed", upstream=self.service)
            CIRCUIT_OPEN.labels(self.service).set(0)
        self.state = CLOSED
        self.failures = 0

    def failure(self) -> None:
        if self.state == HALF_OPEN:
            self._open()
            return
        self.failures += 1
        if self.state == CLOSED and self.failures >= self.threshold:
            self._open()

    def abandon(self) -> None:
        """The request ended without telling whether the upstream is healthy."""
        if self.state == HALF_OPEN:
            self.probe_started = 0.0  # let the next request probe

    def _open(self) -> None:
        if self.state == CLOSED:
            log.error("gateway.circuit_opened", upstream=self.service, failures=self.failures)
        self.state = OPEN
        self.opened_at = time.monotonic()
        CIRCUIT_OPEN.labels(self.service).set(1)
