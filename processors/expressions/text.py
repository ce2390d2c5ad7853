"""String semantics of the .NET runtime the Microsoft service uses: UTF-16 lengths, white space,
invariant case mapping, ToTitleCase separators, the NormalizeDiacritics table, DN components."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from runtime.text import is_bmp, utf16_length

# .NET Char.IsWhiteSpace: Zs/Zl/Zp plus U+0009–U+000D, U+0085. Python's str.strip() would also strip
# U+001C–U+001F, which .NET keeps.
NET_WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def utf16_slice(text: str, start: int, stop: int | None = None) -> str:
    """Substring by UTF-16 code-unit offsets (0-based, stop exclusive).

    Where .NET would cut a surrogate pair in half and leave a lone surrogate (which AD then rejects or
    mangles), the whole character is left out instead, so the result never exceeds the requested units.
    """
    if is_bmp(text):
        return text[start:stop]
    kept = []
    unit = 0
    for char in text:
        width = 2 if char > "\uffff" else 1
        if unit >= start and (stop is None or unit + width <= stop):
            kept.append(char)
        unit += width
    return "".join(kept)


def utf16_index(text: str, index: int) -> int:
    """The UTF-16 code-unit offset of the character at Python index `index`."""
    return index if is_bmp(text) else utf16_length(text[:index])


def python_index(text: str, unit: int) -> int:
    """The Python index of the character starting at or after UTF-16 code-unit offset `unit`."""
    if is_bmp(text):
        return unit
    position = 0
    for index, char in enumerate(text):
        if position >= unit:
            return index
        position += 2 if char > "\uffff" else 1
    return len(text)


def _simple_case(text: str, convert: str) -> str:
    # .NET invariant casing maps one UTF-16 unit to one; Python's full mapping would turn ß into SS.
    mapped = getattr(text, convert)()
    if len(mapped) == len(text):
        return mapped
    return "".join(m if len(m := getattr(c, convert)()) == 1 else c for c in text)


def to_lower(text: str, culture: str | None = None) -> str:
    if culture and culture.split("-")[0].lower() in ("tr", "az"):
        text = text.replace("I", "ı").replace("İ", "i")
    return _simple_case(text, "lower")


def to_upper(text: str, culture: str | None = None) -> str:
    if culture and culture.split("-")[0].lower() in ("tr", "az"):
        text = text.replace("i", "İ").replace("ı", "I")
    return _simple_case(text, "upper")


# The Unicode categories .NET ToTitleCase treats as word separators, as the PCase documentation lists them.
_TITLE_SEPARATORS = frozenset(
    {"Zs", "Zl", "Zp", "Cc", "Cf", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So"}
)


@lru_cache(maxsize=4096)
def _is_title_separator(char: str) -> bool:
    return unicodedata.category(char) in _TITLE_SEPARATORS


def proper_case(text: str, separators: str | None = None) -> str:
    """PCase: first letter of each word upper case, the rest lower case.

    Without `separators`, words are split as .NET ToTitleCase splits them; with them, only on those
    characters. Upper-case words are lowered too (the documented `PABLO` → `Pablo`), unlike bare ToTitleCase.
    """
    result = []
    at_word_start = True
    for char in text:
        if char in separators if separators is not None else _is_title_separator(char):
            result.append(char)
            at_word_start = True
        else:
            result.append(to_upper(char) if at_word_start else to_lower(char))
            at_word_start = False
    return "".join(result)


# The NormalizeDiacritics table of the provisioning reference, row by row: characters → replacement.
_DIACRITICS_TABLE = (
    ("ä, à, â, ã, å, á, ą, ă, ā, ā́, ā̀, ā̂, ā̃, ǟ, ā̈, ǡ, a̱, å̄", "a"),
    ("Ä, À, Â, Ã, Å, Á, Ą, Ă, Ā, Ā́, Ā̀, Ā̂, Ā̃, Ǟ, Ā̈, Ǡ, A̱, Å̄", "A"),
    ("æ, ǣ", "ae"),
    ("Æ, Ǣ", "AE"),
    ("ç, č, ć, c̄, c̱", "c"),
    ("Ç, Č, Ć, C̄, C̱", "C"),
    ("ď, d̄, ḏ", "d"),
    ("Ď, D̄, Ḏ", "D"),
    ("ë, è, é, ê, ę, ě, ė, ē, ḗ, ḕ, ē̂, ē̃, ê̄, e̱, ë̄, e̊̄", "e"),
    ("Ë, È, É, Ê, Ę, Ě, Ė, Ē, Ḗ, Ḕ, Ē̂, Ē̃, Ê̄, E̱, Ë̄, E̊̄", "E"),
    ("ğ, ḡ, g̱", "g"),
    ("Ğ, Ḡ, G̱", "G"),
    ("ï, î, ì, í, ı, ī, ī́, ī̀, ī̂, ī̃, i̱", "i"),
    ("Ï, Î, Ì, Í, İ, Ī, Ī́, Ī̀, Ī̂, Ī̃, I̱", "I"),
    ("ľ, ł, l̄, ḹ, ḻ", "l"),
    ("Ł, Ľ, L̄, Ḹ, Ḻ", "L"),
    ("ñ, ń, ň, n̄, ṉ", "n"),
    ("Ñ, Ń, Ň, N̄, Ṉ", "N"),
    ("ö, ò, ő, õ, ô, ó, ō, ṓ, ṑ, ō̂, ō̃, ȫ, ō̈, ǭ, ȭ, ȱ, o̱", "o"),
    ("Ö, Ò, Ő, Õ, Ô, Ó, Ō, Ṓ, Ṑ, Ō̂, Ō̃, Ȫ, Ō̈, Ǭ, Ȭ, Ȱ, O̱", "O"),
    ("ø, ø̄, œ̄", "oe"),
    ("Ø, Ø̄, Œ̄", "OE"),
    ("ř, r̄, ṟ, ṝ", "r"),
    ("Ř, R̄, Ṟ, Ṝ", "R"),
    ("ß", "ss"),
    ("š, ś, ș, ş, s̄, s̱", "s"),
    ("Š, Ś, Ș, Ş, S̄, S̱", "S"),
    ("ť, ț, t̄, ṯ", "t"),
    ("Ť, Ț, T̄, Ṯ", "T"),
    ("ü, ù, û, ú, ů, ű, ū, ū́, ū̀, ū̂, ū̃, u̇̄, ǖ, ṻ, ṳ̄, u̱", "u"),
    ("Ü, Ù, Û, Ú, Ů, Ű, Ū, Ū́, Ū̀, Ū̂, Ū̃, U̇̄, Ǖ, Ṻ, Ṳ̄, U̱", "U"),
    ("ÿ, ý, ȳ, ȳ́, ȳ̀, ȳ̃, y̱", "y"),
    ("Ÿ, Ý, Ȳ, Ȳ́, Ȳ̀, Ȳ̃, Y̱", "Y"),
    ("ź, ž, ż, z̄, ẕ", "z"),
    ("Ź, Ž, Ż, Z̄, Ẕ", "Z"),
)


def _diacritic_replacements() -> tuple[dict[int, str], dict[str, str], re.Pattern[str]]:
    # Table entries are compared in NFC; those that stay several code points (a letter with stacked marks)
    # go through a regex, tried before the single characters they start with.
    singles: dict[int, str] = {}
    sequences: dict[str, str] = {}
    for characters, replacement in _DIACRITICS_TABLE:
        for entry in characters.split(", "):
            normalized = unicodedata.normalize("NFC", entry)
            if len(normalized) == 1:
                singles[ord(normalized)] = replacement
            else:
                sequences[normalized] = replacement
    pattern = "|".join(re.escape(s) for s in sorted(sequences, key=len, reverse=True))
    return singles, sequences, re.compile(pattern)


_DIACRITIC_SINGLES, _DIACRITIC_SEQUENCES, _DIACRITIC_SEQUENCE_PATTERN = _diacritic_replacements()


def normalize_diacritics(text: str) -> str:
    """Replace the characters of the documented NormalizeDiacritics table; anything else is kept."""
    if text.isascii():
        return text
    text = unicodedata.normalize("NFC", text)
    text = _DIACRITIC_SEQUENCE_PATTERN.sub(lambda m: _DIACRITIC_SEQUENCES[m.group()], text)
    return text.translate(_DIACRITIC_SINGLES)


_DN_HEX_PAIR = re.compile(r"[0-9A-Fa-f]{2}")


def dn_components(dn: str) -> list[str]:
    """The unescaped values of a DN's RDNs, left to right (RFC 4514: `\\,`, `\\2C` and friends)."""
    values: list[str] = []
    current = bytearray()
    index = 0
    while index < len(dn):
        char = dn[index]
        if char == "\\" and index + 1 < len(dn):
            pair = dn[index + 1 : index + 3]
            if _DN_HEX_PAIR.fullmatch(pair):
                current.append(int(pair, 16))
                index += 3
                continue
            current.extend(dn[index + 1].encode())
            index += 2
            continue
        if char == ",":
            values.append(current.decode("utf-8", "replace"))
            current = bytearray()
        else:
            current.extend(char.encode())
        index += 1
    values.append(current.decode("utf-8", "replace"))
    return [component.partition("=")[2].strip() for component in values]
