"""When a writer holds its partitions: the DC unavailable (exponential backoff), quarantine, or the active
configuration disabled or deleted, as one pure state.

The group sink tells this state what happened (AD took a decision, AD was unavailable, the
credentials were rejected); it answers how long writing waits and whether a record given now
is a quarantine retry. Time comes from an injectable clock, shared with the quarantine, so the
backoff and the retry schedule are tested without waiting.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from schemas.active import ConfigurationState
from schemas.config import WriterSettings
from writers.quarantine import Quarantine, QuarantinePolicy, utc_now


class Hold:
    """One writer's backoff from an unavailable DC, and its quarantine (writers/quarantine.py)."""

    def __init__(
        self,
        quarantine: Quarantine,
        *,
        initial_seconds: float,
        max_seconds: float,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self.quarantine = quarantine
        self.unavailable_since: dt.datetime | None = None
        self._initial = self._backoff = initial_seconds
        self._max = max_seconds
        self._clock = clock
        self._resume_at: dt.datetime | None = None  # when writing may try the DC again
        # The active configuration's state while it stops writing (disabled, deleted); None: it does not.
        self.paused_by_configuration: ConfigurationState | None = None

    @classmethod
    def from_settings(cls, settings: WriterSettings) -> Hold:
        return cls(
            Quarantine(QuarantinePolicy.from_settings(settings)),
            initial_seconds=settings.retry_initial_seconds,
            max_seconds=settings.retry_max_seconds,
        )

    def wait(self) -> float | None:
        """Seconds until writing may be tried again: 0 now; None until released: the quarantine cleared
        (disabled), or the active configuration enabled again (no quarantine retry falls due meanwhile)."""
        if self.paused_by_configuration is not None:
            return None
        now = self._clock()
        waits = [self._resume_at - now] if self._resume_at is not None else []
        if not self.quarantine.writing:
            next_retry = self.quarantine.next_retry
            if next_retry is None:
                return None
            waits.append(next_retry - now)
        return max([0.0, *(w.total_seconds() for w in waits)])

    def retry_due(self) -> bool:
        """Whether what is given now is a quarantine retry: one record, or the bind alone."""
        return not self.quarantine.writing and self.wait() == 0

    def unavailable(self) -> float:
        """The DC could not be reached: the seconds to wait before trying again, doubling each time up to the max."""
        now = self._clock()
        delay, self._backoff = self._backoff, min(self._backoff * 2, self._max)
        self._resume_at = now + dt.timedelta(seconds=delay)
        if self.unavailable_since is None:
            self.unavailable_since = now
        return delay

    def available(self) -> bool:
        """The DC answered: the backoff starts over. True when it had been unavailable."""
        self._backoff = self._initial
        self._resume_at = None
        was, self.unavailable_since = self.unavailable_since, None
        return was is not None

    def pause(self, state: ConfigurationState) -> bool:
        """The active configuration stops writing (its state says why). True when writing was not paused."""
        was, self.paused_by_configuration = self.paused_by_configuration, state
        return was is None

    def resume(self) -> bool:
        """The active configuration is enabled. True when it had paused writing."""
        was, self.paused_by_configuration = self.paused_by_configuration, None
        return was is not None
