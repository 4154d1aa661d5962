"""Strings from files, made safe to print: control and format characters escaped.

A model file, a tokenizer or a dataset may hold anything, and a string printed raw can move the
cursor, recolour or clear the terminal, or hide text behind a bidirectional override. Every string
that comes from a file goes through `printable` before it is printed.
"""
import unicodedata

_UNSAFE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, format (bidi), surrogates, unassigned


def printable(value, limit=None):
    """str(value) with every control/format character as \\xNN, \\uNNNN or \\UNNNNNNNN (a backslash as
    \\\\), cut to `limit` characters with "..." when given."""
    out = []
    for ch in str(value):
        if ch == "\\":
            out.append("\\\\")
        elif unicodedata.category(ch) in _UNSAFE:
            n = ord(ch)
            out.append(f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}")
        else:
            out.append(ch)
    text = "".join(out)
    return text if limit is None or len(text) <= limit else text[:limit] + "..."


def quoted(text):
    """`text` quoted as JSON (spaces and newlines visible), and what JSON leaves raw (DEL, C1
    controls, bidi overrides) escaped: a token or a text on one line of a terminal."""
    import json

    return "".join(c if c == "\\" else printable(c) for c in json.dumps(text, ensure_ascii=False))
