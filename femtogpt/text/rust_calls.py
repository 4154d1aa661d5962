"""Calls into the Rust `tokenizers` library, and `TokenizerError`, the one error of text/.

`rust_errors(what)` wraps a call so that whatever the library raises becomes one TokenizerError line,
a Rust panic included: pyo3 raises a panic as `pyo3_runtime.PanicException`, a BaseException (not an
Exception), after Rust's panic hook has already written the panic and, under RUST_BACKTRACE, a
backtrace straight to file descriptor 2. A crafted tokenizer file can cause one (a regex that exhausts
Oniguruma's retry limit panics in the onig crate), so fd 2 is held back while a call runs: dropped on
a failure, passed on otherwise. Not here: the tokenizer itself (text/tokenizer.py).
"""
import os
import sys
import tempfile
import threading
from contextlib import contextmanager

from femtogpt.text.printable import printable


class TokenizerError(ValueError):
    """Bad tokenizer input or data; the message is one line naming the file or flag."""

    def __init__(self, message):
        super().__init__(" ".join(str(message).splitlines()))


def _rust_problem(exc: BaseException) -> str:
    # the library's own message, one line, control characters escaped (it may quote the file's JSON)
    return printable(" ".join(str(exc).split()), 300)


@contextmanager
def rust_errors(what: str):
    """Run the body (calls into the tokenizers library); anything it raises but a TokenizerError, an
    interrupt or an exit becomes TokenizerError("{what}: ..."), and a panic's report stays off the terminal."""
    with _held_stderr() as held:
        try:
            yield
        except (KeyboardInterrupt, SystemExit, GeneratorExit, TokenizerError):
            raise
        except RecursionError:
            held.drop()
            raise TokenizerError(f"{what}: nested too deeply") from None
        except BaseException as exc:  # pyo3_runtime.PanicException derives from BaseException only
            held.drop()
            kind = "panicked" if type(exc).__name__ == "PanicException" else "failed"
            raise TokenizerError(f"{what}: the tokenizers library {kind} ({_rust_problem(exc)})") from None


class _Held:
    def __init__(self):
        self.dropped = False

    def drop(self):
        self.dropped = True


_hold_lock = threading.Lock()
_sink = None                               # one temporary file, reused: decode runs once per generated token


@contextmanager
def _held_stderr():
    # fd 2 goes to the sink for the duration; a nested call, or one from another thread, holds nothing more
    global _sink
    if not _hold_lock.acquire(blocking=False):
        yield _Held()
        return
    try:
        try:
            os.fstat(2)
        except OSError:                    # no fd 2 at all: nothing to protect
            yield _Held()
            return
        if _sink is None:
            _sink = tempfile.TemporaryFile()
        _sink.seek(0)
        _sink.truncate()
        held, saved = _Held(), os.dup(2)
        try:  # from before the redirection: a Ctrl-C just after dup2 must still give fd 2 back
            sys.stderr.flush()
            os.dup2(_sink.fileno(), 2)
            yield held
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if not held.dropped and _sink.tell():
                _sink.seek(0)
                os.write(2, _sink.read())
    finally:
        _hold_lock.release()
