"""Locust load profile against a running platform (``make run`` then ``make load``).

The foundation exposes no tenant-facing API yet; this profile exercises the gateway's own
endpoints and the proxied path. Each API issue extends it with its real traffic mix.
"""

from __future__ import annotations

from locust import FastHttpUser, between, task


class GatewayUser(FastHttpUser):
    wait_time = between(0.0, 0.05)

    @task(5)
    def ready(self) -> None:
        self.client.get("/health/ready")

    @task(1)
    def openapi(self) -> None:
        self.client.get("/api/v1/openapi.json")

    @task(3)
    def proxied_not_found(self) -> None:
        # A proxied request end to end (gateway -> service -> problem+json 404).
        with self.client.get("/api/v1/contacts/does-not-exist", catch_response=True) as r:
            if r.status_code == 404 and r.headers.get("content-type", "").startswith(
                "application/problem+json"
            ):
                r.success()
            else:
                r.failure(f"unexpected {r.status_code}")
