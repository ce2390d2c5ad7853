""".NET regular-expression dialect on top of Python's `re`: named groups `(?<name>…)`, back-references
`\\k<name>` and `$`-substitutions (`${name}`, `$1`, `$$`, `$&`) as Replace() documents them."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

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
def compile_dotnet(pattern: str) -> re.Pattern[str]:
    """Compile a .NET pattern; raises re.error when Python cannot express it."""
    return re.compile(_translate(pattern))


def substitution(template: str) -> Callable[[re.Match[str]], str]:
    """A replacement callable expanding .NET substitutions in `template` for each match."""
    if "$" not in template:
        return lambda match: template

    def expand(match: re.Match[str]) -> str:
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
