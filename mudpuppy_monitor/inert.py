"""Text from the watched root shown to a person, made harmless.

Run names, ids and error messages come from files anyone who can write under the root controls.
C0 and C1 controls and DEL would reach a terminal as escape sequences (retitle the window, write
the clipboard through OSC 52, hide lines) or break a table row (a newline); the Unicode bidi
controls reorder what is shown (U+202E makes `uni-\\u202etxt.exe` read `uni-exe.txt`). Every view
(the terminal views, file names the server suggests) replaces them.
"""

from __future__ import annotations

import re

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def inert(text: object, replacement: str = "?") -> str:
    """`text` as a string with every control and bidi character replaced."""
    return UNSAFE.sub(replacement, str(text))
