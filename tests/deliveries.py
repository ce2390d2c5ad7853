"""Graph deliveries and a recording sink for the webhook's tests."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp.test_utils import TestClient

from schemas.notifications import NotificationBatch
from tests.polling import until

SECRET = "s3cret-client-state"
TENANT = "11111111-2222-3333-4444-555555555555"
SUBSCRIPTION = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"


class RecordingSink:
    """Keeps the records the webhook would put on graph.notifications."""

    def __init__(self) -> None:
        self.records: list[bytes] = []
        self.ready = True

    async def start(self) -> None:
        pass

    async def persist(self, records: Sequence[bytes]) -> None:
        self.records.extend(records)

    async def close(self) -> None:
        pass

    @property
    def batches(self) -> list[NotificationBatch]:
        return [NotificationBatch.model_validate_json(record) for record in self.records]


def notification(client_state: str | None = SECRET, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "subscriptionId": SUBSCRIPTION,
        "subscriptionExpirationDateTime": "2026-12-24T17:42:30.1669210Z",
        "clientState": client_state,
        "changeType": "updated",
        "resource": "Groups/0f6a3b5c-0000-4000-8000-000000000001",
        "tenantId": TENANT,
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Group",
            "@odata.id": "Groups/0f6a3b5c-0000-4000-8000-000000000001",
            "id": "0f6a3b5c-0000-4000-8000-000000000001",
            "organizationId": TENANT,
        },
    }
    body.update(extra)
    return body


def worst_case_body(limit: int) -> bytes:
    """As many notifications as fit in limit bytes, written so that they grow the most when
    re-encoded: floats written short that print in full (9E15, 5 bytes with its comma, becomes
    9000000000000000.0, 19 bytes: 3.8 times), a timestamp as a number, the shortest secret (it is
    stripped); each notification small enough to fit in a record on its own."""
    floats = ",".join(["9E15"] * 2_000)
    one = (
        f'{{"subscriptionId":"","subscriptionExpirationDateTime":0,"clientState":"s","tenantId":"{TENANT}",'
        f'"x":[{floats}]}}'
    ).encode()
    count = (limit - len(b'{"value":[]}') + 1) // (len(one) + 1)
    return b'{"value":[' + b",".join([one] * count) + b"]}"


async def until_ready(client: TestClient, timeout: float = 30.0) -> None:
    """Wait until the webhook's /healthz says its sink can persist."""

    async def ready() -> bool:
        return (await client.get("/healthz")).status == 200

    await until(ready, "the webhook's /healthz to answer 200", timeout=timeout, interval=0.02)
