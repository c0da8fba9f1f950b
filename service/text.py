"""Text that people send (names, consent records, style names, ids in URLs): no characters that break or disguise it.

NUL cannot be stored in PostgreSQL at all; other control characters, line and paragraph separators and
unpaired surrogates garble logs and pages; bidirectional overrides and isolates make text display in another
order than it is stored (a name that reads differently from what the audit log holds). Such text is refused
with 422, on every database alike.
"""

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})  # controls, surrogates, line and paragraph separators


def unsafe_character(text: str) -> str | None:
    """The first character of `text` that has no place in it, if any."""
    for character in text:
        if character in BIDI_CONTROLS or unicodedata.category(character) in REFUSED_CATEGORIES:
            return character
    return None


def check_plain_text(text: str) -> str:
    """`text` itself, or ValueError naming the first control or bidirectional character in it."""
    if (character := unsafe_character(text)) is not None:
        raise ValueError(f"contains the control or bidirectional character U+{ord(character):04X}; remove it")
    return text


def plain_text(max_length: int):
    """A pydantic type: non-empty text of at most `max_length` characters, without refused characters."""
    return Annotated[str, StringConstraints(min_length=1, max_length=max_length), AfterValidator(check_plain_text)]
