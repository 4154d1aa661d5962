"""text/printable.py: nothing from a file reaches the terminal as a control sequence."""
from femtogpt.text.printable import printable


def test_escape_sequences_and_bidi_overrides_are_escaped():
    assert printable("red\x1b[31m!\x07") == "red\\x1b[31m!\\x07"
    assert printable("a\u202eb\u200bc") == "a\\u202eb\\u200bc"
    assert printable("line\nnext\r\t") == "line\\x0anext\\x0d\\x09"
    assert printable("\x9b2J") == "\\x9b2J"  # the one-byte C1 CSI


def test_ordinary_text_is_unchanged_and_backslashes_stay_unambiguous():
    assert printable("héllo wörld 日本 😀 ;") == "héllo wörld 日本 😀 ;"
    assert printable("a\\x1b") == "a\\\\x1b"
    assert printable("x" * 50, limit=10) == "x" * 10 + "..."
    assert printable(12.5) == "12.5"
