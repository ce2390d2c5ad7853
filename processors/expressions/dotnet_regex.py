""".NET regular-expression dialect on top of the `regex` module: named groups `(?<name>…)`, back-references
`\\k<name>` and `$`-substitutions (`${name}`, `$1`, `$$`, `$&`) as Replace() documents them.

`regex` rather than `re` for its match timeout: a pattern, and the value it runs on, can come from
the tenant, and one catastrophic backtrack must not stall the processors (.NET has the same guard,
Regex.MatchTimeout). Every match runs through `sub` and `search` here, bounded by MATCH_TIMEOUT.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

import regex

# Far above what a real mapping or filter needs on an attribute value (microseconds), far below
# what would hold up the stream.
MATCH_TIMEOUT = 0.25
Pattern = regex.Pattern
Match = regex.Match
PatternError = regex.error


class MatchTimeout(ValueError):
    """A regular expression gave up on a value: that object's error, never a stall of the stage."""


_NAMED_GROUP = re.compile(r"\(\?(?:<(?![=!])([A-Za-z_]\w*)>|'([A-Za-z_]\w*)')")
_BACK_REFERENCE = re.compile(r"\\k(?:<([A-Za-z_]\w*)>|'([A-Za-z_]\w*)')")
_SUBSTITUTION = re.compile(r"\$(?:\{([A-Za-z_]\w*|\d+)\}|(\d+)|([$&`'+_]))")


def _translate(pattern: str) -> str:
    # Rewrites outside escapes only: `\(?<x>` is a literal parenthesis, not a group.
    out = []
    index = 0
    while index < len(pattern):
        if pattern[index] == "\\":
            if match := _BACK_REFERENCE.match(pattern, index):
                out.append(f"(?P={match[1] or match[2]})")
                index = match.end()
            else:
                out.append(pattern[index : index + 2])
                index += 2
        elif match := _NAMED_GROUP.match(pattern, index):
            out.append(f"(?P<{match[1] or match[2]}>")
            index = match.end()
        else:
            out.append(pattern[index])
            index += 1
    return "".join(out)


@lru_cache(maxsize=256)
def compile_dotnet(pattern: str) -> Pattern:
    """Compile a .NET pattern; raises PatternError when Python cannot express it."""
    return regex.compile(_translate(pattern))


def sub(pattern: Pattern, replacement: Callable[[Match], str], text: str) -> str:
    try:
        return pattern.sub(replacement, text, timeout=MATCH_TIMEOUT)
    except TimeoutError:
        raise _timeout(pattern, text) from None


def search(pattern: Pattern, text: str) -> Match | None:
    try:
        return pattern.search(text, timeout=MATCH_TIMEOUT)
    except TimeoutError:
        raise _timeout(pattern, text) from None


def _timeout(pattern: Pattern, text: str) -> MatchTimeout:
    return MatchTimeout(
        f"the regular expression {pattern.pattern!r} gave up after {MATCH_TIMEOUT} s"
        f" on a value of {len(text)} characters"
    )


def substitution(template: str) -> Callable[[Match], str]:
    """A replacement callable expanding .NET substitutions in `template` for each match."""
    if "$" not in template:
        return lambda match: template

    def expand(match: Match) -> str:
        def one(reference: re.Match[str]) -> str:
            group = reference[1] or reference[2]
            if group is not None:
                try:
                    return match.group(int(group) if group.isdigit() else group) or ""
                except IndexError:
                    return reference.group()  # .NET leaves unknown group references as written
            special = reference[3]
            whole = match.string
            return {
                "$": "$",
                "&": match.group(),
                "`": whole[: match.start()],
                "'": whole[match.end() :],
                "+": match.group(match.lastindex or 0) or "",
                "_": whole,
            }[special]

        return _SUBSTITUTION.sub(one, template)

    return expand
