"""The one atomic file writer: every file femtogpt writes (model files, exports, tokenizer JSON, the token
cache, experiment results) goes through `write_atomically`.

A temp file beside the target (same directory, so the rename never crosses file systems), written,
flushed and fsynced, renamed over the target, then the directory fsynced so the rename itself survives a
crash. Readers see the old file or the new one, never a part. Not here: what goes into the file.

A writer killed mid-save (kill -9, power loss) leaves its temp file, `.NAME.<8 hex digits>.tmp`;
`remove_temp_files` deletes those of one file. It is not called from `write_atomically` itself: a temp
of the same name pattern may be another process's save in progress (two runs writing one token cache,
say), and deleting it would make that save fail. Only a writer that knows it is the file's only writer
may call it: model files are saved under their writer's lock (io/lock.py, io/checkpoint.py).
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Union

Content = Union[bytes, str, Iterable[bytes], Callable[[BinaryIO], None]]


class AtomicWriteError(OSError):
    """A failed save; str() is one line: "<path>: cannot save: <reason>; <what became of the old file>".
    `errno` and `strerror` are the underlying OSError's (None for other failures)."""

    def __init__(self, message: str, code=None, strerror=None):
        super().__init__(code, strerror)
        self.message = message

    def __str__(self):
        return self.message


def write_atomically(path, content: Content) -> None:
    """Replace `path` with `content`: bytes, a str (written as UTF-8), an iterable of byte chunks, or a
    callable that writes to the open binary file. A symlink keeps pointing at the replaced file; an
    existing file's permissions are kept, a new file gets 0o666 less the umask. On failure the temp file
    is removed, the old file is untouched, and AtomicWriteError (one line) is raised; Ctrl-C passes through."""
    path = Path(path)
    if path.is_dir():
        raise AtomicWriteError(f"{path}: cannot save: it is a directory", errno.EISDIR, os.strerror(errno.EISDIR))
    target = _target(path)
    directory = target.parent
    existed = target.exists()
    tmp = directory / f".{target.name}.{secrets.token_hex(4)}.tmp"  # matches _temp_pattern
    created = True  # from here tmp may be ours: a Ctrl-C can land right after os.open, before any next line
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)  # umask
        except FileExistsError:  # the random name is taken: that file is not ours to remove
            created = False
            raise
        with os.fdopen(fd, "wb", buffering=1 << 20) as f:
            if existed:
                os.fchmod(f.fileno(), stat.S_IMODE(os.stat(target).st_mode))  # keep the old file's permissions
            _write(f, content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:  # Ctrl-C included: never leave a temp file behind when we can help it
        if created:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if not isinstance(e, Exception):
            raise
        reason = _reason(e, directory) if isinstance(e, OSError) else f"{type(e).__name__}: {e}"
        kept = f"the existing {path.name} is unchanged" if existed else "nothing was written"
        raise AtomicWriteError(f"{path}: cannot save: {reason}; {kept}", getattr(e, "errno", None),
                               getattr(e, "strerror", None)) from None
    try:  # make the rename itself durable; some file systems refuse fsync on a directory, the file is in place
        dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _target(path: Path) -> Path:
    return Path(os.path.realpath(path)) if path.is_symlink() else path  # replace the file, keep the link


def _temp_pattern(name: str):
    return re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{8}}\.tmp")


def temp_files(path) -> list:
    """The temp files of `path` (beside the real file when `path` is a symlink) that saves killed
    mid-write left behind, or that a save running right now is writing."""
    target = _target(Path(path))
    pattern = _temp_pattern(target.name)
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    return sorted(target.parent / name for name in names if pattern.fullmatch(name))


def remove_temp_files(path) -> int:
    """Delete the temp files of `path` left by killed saves; returns how many went. Call it only when no
    other process can be saving `path` now (see the module docstring); files that cannot be removed
    are left alone."""
    removed = 0
    for tmp in temp_files(path):
        try:
            os.unlink(tmp)
            removed += 1
        except OSError:
            pass
    return removed


def _write(f, content: Content) -> None:
    if isinstance(content, str):
        f.write(content.encode("utf-8"))
    elif isinstance(content, (bytes, bytearray, memoryview)):
        f.write(content)
    elif callable(content):
        content(f)
    else:
        for chunk in content:
            f.write(chunk)


def _reason(e: OSError, directory) -> str:
    where = f"directory {str(directory)!r}"
    return {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
            errno.EFBIG: "file too large for this file system or process limit",
            errno.EROFS: f"read-only file system ({where})", errno.EACCES: f"permission denied ({where})",
            errno.EPERM: f"operation not permitted ({where})", errno.ENOENT: f"{where} does not exist",
            errno.ENOTDIR: f"{where} is not a directory"}.get(e.errno, e.strerror or str(e))
