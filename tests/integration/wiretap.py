"""The writer's real LDAP connection to the DC, wrapped only to record each request and AD's answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ldap3

from schemas.config import AdSettings
from writers.connection import connect

RECORDED = ("add", "modify", "modify_dn", "delete", "search")


@dataclass(frozen=True)
class Request:
    operation: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    result: int  # AD's result code


class Wiretap:
    """A connector for Directory: real connections whose requests are recorded in order."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def connect(self, settings: AdSettings) -> ldap3.Connection:
        connection = connect(settings)
        for operation in RECORDED:
            setattr(connection, operation, self._recorded(operation, getattr(connection, operation)))
        return connection

    def _recorded(self, operation: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            answer = call(*args, **kwargs)  # SAFE_SYNC: (status, result, response, request)
            self.requests.append(Request(operation, args, kwargs, answer[1]["result"]))
            return answer

        return recorded

    def clear(self) -> None:
        self.requests.clear()

    def writes(self) -> list[tuple[str, int]]:
        """(operation, result code) of every request but searches."""
        return [(r.operation, r.result) for r in self.requests if r.operation != "search"]

    def searches(self) -> list[list[str]]:
        """The attributes each search asked for."""
        return [list(r.kwargs.get("attributes") or []) for r in self.requests if r.operation == "search"]

    def member_modifies(self) -> list[int]:
        """The number of values of each member change in each modify, rejected ones included."""
        counts = []
        for r in self.requests:
            if r.operation == "modify":
                changes = r.args[1] if len(r.args) > 1 else r.kwargs["changes"]
                counts += [len(values) for _, values in changes.get("member", [])]
        return counts
