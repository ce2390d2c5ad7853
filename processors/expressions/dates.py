"""Date semantics of the documented functions: free-form parsing (CDate), .NET custom format strings
(FormatDateTime), VB-style DateAdd/DateDiff intervals and AD FILETIME numbers (DateFromNum, NumFromDate).

The Microsoft service runs in UTC, so a date without an offset is read as UTC and a date with an offset is
converted to UTC; every date this module returns is timezone-aware UTC unless a format leaves it unspecified.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

INTERVALS = frozenset({"yyyy", "m", "d", "ww", "h", "n", "s"})
DATE_TIME_STYLES = frozenset(
    {
        "None",
        "AdjustToUniversal",
        "AllowInnerWhite",
        "AllowLeadingWhite",
        "AllowTrailingWhite",
        "AllowWhiteSpaces",
        "AssumeLocal",
        "AssumeUniversal",
        "NoCurrentDateDefault",
        "RoundtripKind",
    }
)
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
# AD writes 0 and 0x7FFFFFFFFFFFFFFF into accountExpires and friends to mean "never"; they have no date.
_FILETIME_NEVER = frozenset({0, 0x7FFFFFFFFFFFFFFF})

_ISO_DATE = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})"
    r"(?:[T ](?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,7}))?)?)?"
    r"\s*(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)?",
    re.ASCII,  # .NET reads ASCII digits only
)
_US_DATE = re.compile(
    r"(?P<month>\d{1,2})/(?P<day>\d{1,2})/(?P<year>\d{4})"
    r"(?:\s+(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?\s*(?P<meridiem>AM|PM)?)?",
    re.IGNORECASE | re.ASCII,
)
_MONTHS = tuple(calendar.month_name)[1:]
_DAYS = tuple(calendar.day_name)


def _offset(text: str | None) -> timedelta | None:
    if not text:
        return None
    if text == "Z":
        return timedelta(0)
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))


def _to_utc(value: datetime, offset: timedelta | None) -> datetime:
    return (value - offset if offset is not None else value).replace(tzinfo=UTC)


def parse_date(text: str) -> datetime:
    """Free-form date as CDate reads it: ISO 8601 (date, optional time, optional offset) or M/d/yyyy h:mm:ss tt.

    Raises ValueError for anything else.
    """
    text = text.strip()
    if match := _ISO_DATE.fullmatch(text):
        fraction = (match["fraction"] or "").ljust(6, "0")[:6]
        value = datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"] or 0),
            int(match["minute"] or 0),
            int(match["second"] or 0),
            int(fraction),
        )
        return _to_utc(value, _offset(match["offset"]))
    if match := _US_DATE.fullmatch(text):
        hour = int(match["hour"] or 0)
        if match["meridiem"]:
            hour = hour % 12 + (12 if match["meridiem"].upper() == "PM" else 0)
        value = datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            hour,
            int(match["minute"] or 0),
            int(match["second"] or 0),
        )
        return value.replace(tzinfo=UTC)
    raise ValueError(f"not a recognised date: {text!r}")


def _add_months(value: datetime, months: int) -> datetime:
    # Like .NET AddMonths: the day is clamped to the length of the resulting month.
    index = value.year * 12 + value.month - 1 + months
    year, month = divmod(index, 12)
    day = min(value.day, calendar.monthrange(year, month + 1)[1])
    return value.replace(year=year, month=month + 1, day=day)


def date_add(interval: str, amount: int, value: datetime) -> datetime:
    match interval:
        case "yyyy":
            return _add_months(value, 12 * amount)
        case "m":
            return _add_months(value, amount)
        case "ww":
            return value + timedelta(weeks=amount)
        case "d":
            return value + timedelta(days=amount)
        case "h":
            return value + timedelta(hours=amount)
        case "n":
            return value + timedelta(minutes=amount)
        case "s":
            return value + timedelta(seconds=amount)
    raise ValueError(f"unknown interval {interval!r}; use one of {', '.join(sorted(INTERVALS))}")


def _week_start(value: datetime) -> datetime:
    midnight = value.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=(value.weekday() + 1) % 7)  # weeks start on Sunday, as in VB


def date_diff(interval: str, first: datetime, second: datetime) -> int:
    """Number of interval boundaries crossed from `first` to `second` (VB DateDiff semantics).

    Counting boundaries, not whole periods, is what makes the documented -493 weeks and -113 months.
    """
    first, second = first.astimezone(UTC), second.astimezone(UTC)
    match interval:
        case "yyyy":
            return second.year - first.year
        case "m":
            return (second.year - first.year) * 12 + second.month - first.month
        case "ww":
            return (_week_start(second) - _week_start(first)).days // 7
        case "d":
            return (second.date() - first.date()).days
    seconds = {"h": 3600, "n": 60, "s": 1}.get(interval)
    if seconds is None:
        raise ValueError(f"unknown interval {interval!r}; use one of {', '.join(sorted(INTERVALS))}")
    return int(second.timestamp() // seconds - first.timestamp() // seconds)


def date_from_filetime(ticks: int) -> datetime | None:
    """AD FILETIME (100-ns ticks since 1601-01-01 UTC) to a date; the "never" markers give None."""
    if ticks in _FILETIME_NEVER:
        return None
    return _FILETIME_EPOCH + timedelta(microseconds=ticks // 10)


def filetime_from_date(value: datetime) -> int:
    delta = value.astimezone(UTC) - _FILETIME_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


# .NET custom date and time format strings -------------------------------------------------------------

_SPECIFIERS = frozenset("yMdhHmsfFtzKg")
_STANDARD_FORMATS = {
    "o": "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
    "O": "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
    "s": "yyyy'-'MM'-'dd'T'HH':'mm':'ss",
    "u": "yyyy'-'MM'-'dd HH':'mm':'ss'Z'",
    "d": "M/d/yyyy",
    "G": "M/d/yyyy h:mm:ss tt",
}


def _format_tokens(pattern: str) -> list[tuple[str, int | str]]:
    """Split a .NET format into (specifier letter, repeat count) and ("", literal text) tokens."""
    if len(pattern) == 1 and pattern in _STANDARD_FORMATS:
        pattern = _STANDARD_FORMATS[pattern]
    elif len(pattern) == 1 and pattern.isalpha():
        raise ValueError(f"standard date format {pattern!r} is not supported; use a custom format")
    tokens: list[tuple[str, int | str]] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char in "'\"":
            end = pattern.find(char, index + 1)
            if end < 0:
                raise ValueError(f"unterminated quoted text in date format {pattern!r}")
            tokens.append(("", pattern[index + 1 : end]))
            index = end + 1
        elif char == "\\" and index + 1 < len(pattern):
            tokens.append(("", pattern[index + 1]))
            index += 2
        elif char == "%" and index + 1 < len(pattern):
            index += 1
        elif char in _SPECIFIERS:
            end = index
            while end < len(pattern) and pattern[end] == char:
                end += 1
            tokens.append((char, end - index))
            index = end
        else:
            tokens.append(("", char))
            index += 1
    return tokens


def check_format(pattern: str) -> None:
    """Raise ValueError if `pattern` is not a usable .NET date format."""
    _format_tokens(pattern)


def _token_regex(letter: str, count: int) -> str:
    if letter in "yMdhHms" and count == 1 and letter != "y":
        return rf"(?P<{letter}>\d{{1,2}})"
    match letter, count:
        case "y", 1 | 2:
            return r"(?P<y>\d{1,2})"
        case "y", _:
            return rf"(?P<y>\d{{{max(count, 4)}}})"
        case "M", 3 | 4:
            names = "|".join(name[:3] if count == 3 else name for name in _MONTHS)
            return rf"(?P<Mname>{names})"
        case "d", _ if count >= 3:
            return "(?:" + "|".join(name[:3] if count == 3 else name for name in _DAYS) + ")"
        case (("M" | "d" | "h" | "H" | "m" | "s"), _):
            return rf"(?P<{letter}>\d{{2}})"
        case "f", _:
            return rf"(?P<f>\d{{{count}}})"
        case "F", _:
            return rf"(?P<f>\d{{0,{count}}})"
        case "t", 1:
            return r"(?P<t>[AaPp])"
        case "t", _:
            return r"(?P<t>[AaPp][Mm])"
        case "z", 1 | 2:
            return r"(?P<z>[+-]\d{1,2})"
        case "z", _:
            return r"(?P<z>[+-]\d{2}:\d{2})"
        case "K", _:
            return r"(?P<z>Z|[+-]\d{2}:\d{2})?"
    return r"(?:A\.D\.|AD)"  # g: the era


def _month_number(name: str) -> int:
    for number, month in enumerate(_MONTHS, 1):
        if month.lower().startswith(name.lower()):
            return number
    raise ValueError(f"{name!r} is not a month name")


def parse_exact(text: str, pattern: str, styles: frozenset[str]) -> datetime:
    """Parse `text` with a .NET custom format (DateTime.ParseExact); raises ValueError when it doesn't fit."""
    regex = "".join(
        re.escape(str(item)) if not letter else _token_regex(letter, int(item))
        for letter, item in _format_tokens(pattern)
    )
    if not styles or styles & {"AllowLeadingWhite", "AllowTrailingWhite", "AllowWhiteSpaces"}:
        text = text.strip()
    # ASCII: Unicode case folding would let 'ſ' match 's' and 'K' (Kelvin) match 'k' in month and day
    # names, which .NET's invariant culture does not, and which no name could then be looked up by.
    match = re.fullmatch(regex, text, re.IGNORECASE | re.ASCII)
    if match is None:
        raise ValueError(f"{text!r} does not match the date format {pattern!r}")
    parts = match.groupdict()
    year = int(parts.get("y") or 1)
    if parts.get("y") and len(parts["y"]) <= 2:
        year += 2000 if year < 30 else 1900  # .NET's two-digit-year window (1930–2029)
    month = _month_number(parts["Mname"]) if parts.get("Mname") else int(parts.get("M") or 1)
    hour = int(parts.get("H") or parts.get("h") or 0)
    if parts.get("t"):
        hour = hour % 12 + (12 if parts["t"][0] in "Pp" else 0)
    fraction = (parts.get("f") or "").ljust(6, "0")[:6]
    value = datetime(
        year, month, int(parts.get("d") or 1), hour, int(parts.get("m") or 0), int(parts.get("s") or 0), int(fraction)
    )
    offset = _offset(parts.get("z"))
    if offset is not None or styles & {"AssumeUniversal", "AdjustToUniversal"}:
        return _to_utc(value, offset)
    return value


def _offset_text(value: datetime, count: int) -> str:
    offset = value.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    hours, minutes = divmod(minutes, 60)
    if count == 1:
        return f"{sign}{hours}"
    return f"{sign}{hours:02d}" if count == 2 else f"{sign}{hours:02d}:{minutes:02d}"


def format_date(value: datetime, pattern: str) -> str:
    """Render a date with a .NET custom format (invariant culture)."""
    out = []
    for letter, item in _format_tokens(pattern):
        if not letter:
            out.append(str(item))
            continue
        count = int(item)
        match letter:
            case "y":
                out.append(f"{value.year % 100:0{count}d}" if count <= 2 else f"{value.year:0{count}d}")
            case "M":
                names = (str(value.month), f"{value.month:02d}", _MONTHS[value.month - 1][:3])
                out.append(names[count - 1] if count <= 3 else _MONTHS[value.month - 1])
            case "d":
                day_name = _DAYS[value.weekday()]
                names = (str(value.day), f"{value.day:02d}", day_name[:3])
                out.append(names[count - 1] if count <= 3 else day_name)
            case "h":
                hour = value.hour % 12 or 12
                out.append(f"{hour:0{min(count, 2)}d}")
            case "H" | "m" | "s":
                number = {"H": value.hour, "m": value.minute, "s": value.second}[letter]
                out.append(f"{number:0{min(count, 2)}d}")
            case "f" | "F":
                digits = f"{value.microsecond:06d}0"[:count]
                out.append(digits if letter == "f" else digits.rstrip("0"))
            case "t":
                out.append(("AM" if value.hour < 12 else "PM")[:count])
            case "z":
                out.append(_offset_text(value, count))
            case "K":
                if value.tzinfo is not None:
                    out.append("Z" if value.utcoffset() == timedelta(0) else _offset_text(value, 3))
            case "g":
                out.append("A.D.")
    return "".join(out)
