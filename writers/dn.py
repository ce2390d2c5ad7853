"""Distinguished names: RFC 4514 escaping of the cn we build, splitting and comparing DNs.

Pure string work. ldap3.utils.dn.escape_rdn is not used because it escapes NUL as a
backslash followed by a raw NUL (RFC 4514 wants the hex pair \\00) and fails on "".
"""

from __future__ import annotations

import re

from schemas.config import Settings

_SPECIAL = frozenset('\\,+"<>;=')
_HEX = frozenset("0123456789abcdefABCDEF")
# The <GUID=…>;<SID=…>; prefix the extended-DN control (1.2.840.113556.1.4.529) puts before a DN.
_EXTENDED_PREFIX = re.compile(r"^(?:<[A-Za-z]+=[^>]*>;)+")
_EXTENDED_GUID = re.compile(r"<GUID=([0-9A-Fa-f-]{32,36})>")


def escape_rdn_value(value: str) -> str:
    """Escape an attribute value for use in an RDN (RFC 4514 section 2.4)."""
    if not value:
        raise ValueError("an RDN value must not be empty")
    out = []
    for char in value:
        if char in _SPECIAL:
            out.append("\\" + char)
        elif char == "\x00":
            out.append("\\00")
        else:
            out.append(char)
    if out[0] in (" ", "#"):
        out[0] = "\\" + out[0]
    if len(out) > 1 and out[-1] == " ":
        out[-1] = "\\ "
    return "".join(out)


def rdn(attribute: str, value: str) -> str:
    return f"{attribute}={escape_rdn_value(value)}"


def split(dn: str) -> tuple[str, str]:
    """(first RDN, parent DN) of a DN, honouring escaped commas."""
    index = _first_separator(dn)
    if index is None:
        return dn, ""
    return dn[:index], dn[index + 1 :].lstrip()


def strip_extended(dn: str) -> str:
    """The plain DN of an extended DN (`<GUID=…>;<SID=…>;CN=…` → `CN=…`)."""
    return _EXTENDED_PREFIX.sub("", dn)


def extended_guid(dn: str) -> str | None:
    """The GUID component of an extended DN as the server wrote it (hex or dashed), if any."""
    match = _EXTENDED_GUID.search(dn[: len(dn) - len(strip_extended(dn))])
    return match.group(1) if match else None


def normalize(dn: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    """A comparable form: attribute types and values case-folded, escapes resolved, spaces around separators dropped.

    AD compares cn/ou/dc case-insensitively, and operators write containers by hand
    ("OU=Groups, DC=corp,DC=example"), so plain string comparison would see false moves.
    """
    if not dn.strip():
        return ()
    rdns = []
    for raw_rdn in _split_unescaped(dn, ",;"):
        avas = []
        for ava in _split_unescaped(raw_rdn, "+"):
            attribute, sep, value = ava.partition("=")
            if not sep:
                raise ValueError(f"invalid DN {dn!r}: {ava!r} has no '='")
            avas.append((attribute.strip().casefold(), _unescape(value).casefold()))
        rdns.append(tuple(sorted(avas)))
    return tuple(rdns)


def same(a: str, b: str) -> bool:
    return normalize(a) == normalize(b)


def placement_errors(settings: Settings) -> list[str]:
    """Containers the writer could never write in, named by their field (checked at load)."""
    provisioning, base_dn = settings.provisioning, settings.ad.base_dn
    problems = [
        f"provisioning.containers[{i}]: {container} is not below ad.base_dn {base_dn}"
        for i, container in enumerate(provisioning.containers)
        if base_dn and not is_within(container, base_dn)
    ]
    target = provisioning.target_container
    if target and provisioning.containers and not any(is_within(target, c) for c in provisioning.containers):
        problems.append(f"provisioning.target_container: {target} is in none of provisioning.containers")
    return problems


def is_within(dn: str, base: str) -> bool:
    """True when dn is base itself or lies below it."""
    dn_parts, base_parts = normalize(dn), normalize(base)
    return len(dn_parts) >= len(base_parts) and dn_parts[len(dn_parts) - len(base_parts) :] == base_parts


def _first_separator(dn: str) -> int | None:
    escaped = False
    for index, char in enumerate(dn):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",;":
            return index
    return None


def _split_unescaped(text: str, separators: str) -> list[str]:
    parts, start, escaped = [], 0, False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in separators:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def _unescape(value: str) -> str:
    """Resolve \\c and \\XX escapes (hex pairs are UTF-8 bytes); unescaped outer spaces are insignificant."""
    pieces: list[tuple[bytes, bool]] = []  # (bytes, escaped)
    index = 0
    while index < len(value):
        char = value[index]
        pair = value[index + 1 : index + 3]
        if char == "\\" and len(pair) == 2 and set(pair) <= _HEX:
            pieces.append((bytes([int(pair, 16)]), True))
            index += 3
        elif char == "\\" and index + 1 < len(value):
            pieces.append((value[index + 1].encode(), True))
            index += 2
        else:
            pieces.append((char.encode(), False))
            index += 1
    while pieces and pieces[0] == (b" ", False):
        pieces.pop(0)
    while pieces and pieces[-1] == (b" ", False):
        pieces.pop()
    return b"".join(piece for piece, _ in pieces).decode("utf-8", errors="replace")
