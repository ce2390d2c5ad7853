"""Text as AD and the Microsoft service measure it: lengths in UTF-16 code units, as .NET's String.Length.

Shared by the expression language (Len, Left, Mid count UTF-16 units) and the writer (AD's cn
limit of 64 is in UTF-16 units), so neither stage imports the other for it.
"""

from __future__ import annotations


def is_bmp(text: str) -> bool:
    """True when every character is one UTF-16 code unit (no surrogate pairs)."""
    return text.isascii() or max(text) <= "\uffff"


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, as .NET's String.Length counts it."""
    if is_bmp(text):
        return len(text)
    return len(text) + sum(1 for char in text if char > "\uffff")
