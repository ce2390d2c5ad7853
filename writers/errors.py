"""What can go wrong while converging one group, as a policy the consumer loop can read.

- DirectoryUnavailable: the DC (or the way to it) failed, not the object. Reconnect with
  backoff and retry the same records; never skip or commit them.
- ObjectError: AD rejected this object's change. Record a failure result and a dead letter,
  then continue with the next group.
- Refused: e2ad will not write this change at all (protected group, outside the base DN,
  an incomplete desired state). Same policy as ObjectError, but AD was never asked.
- WrittenMeanwhile: not a failure the first time. Read the group again and converge what is
  there now.
"""

from __future__ import annotations


class DirectoryUnavailable(Exception):
    """The DC is down, busy or unreachable; the change itself may be fine."""


class ObjectError(Exception):
    """AD rejected a change of one object; `code` is the LDAP result code."""

    def __init__(self, message: str, *, code: int | None = None, dn: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.dn = dn


class ForeignObjectError(ObjectError):
    """An object without our anchor is in the way; e2ad never overwrites it."""


class Refused(Exception):
    """The writer will not make this change (protected group, outside the base DN, invalid state)."""


class WrittenMeanwhile(ObjectError):
    """Our anchor is already at the DN we were writing: another writer converged the group between
    our read and our write (two writers overlap while partitions move between them)."""
