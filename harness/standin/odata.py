"""Graph's wire conventions the stand-in shares between endpoints: error bodies and timestamps."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from aiohttp import web


class GraphError(Exception):
    """A Graph error response: status plus the error code and message Graph would send."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> web.Response:
        now = graph_time(dt.datetime.now(dt.UTC))
        body = {
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {"date": now, "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())},
            }
        }
        return web.Response(
            status=self.status, text=json.dumps(body), content_type="application/json", headers=self.headers
        )


def graph_time(moment: dt.datetime) -> str:
    """Graph's timestamp form: UTC with seven fractional digits, e.g. 2026-12-24T17:42:30.1669210Z."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def parse_graph_time(value: object, field: str) -> dt.datetime:
    """A client-sent timestamp; naive ones are taken as UTC, as Graph does."""
    if not isinstance(value, str):
        raise GraphError(400, "InvalidRequest", f"{field} must be an ISO 8601 timestamp, got {value!r}")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise GraphError(400, "InvalidRequest", f"{field} is not a valid timestamp: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
