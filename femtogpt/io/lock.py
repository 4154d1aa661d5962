"""The writer's lock on a model file: one process at a time may write a given file.

`model_lock(path, command)` holds an advisory lock (fcntl.flock, exclusive, never waited for) on
`.NAME.lock` beside the file (beside the real file when `path` is a symlink, so every name of one file
shares one lock). The holder writes its pid and command into the lock file; a second writer gets
ModelLocked: "model.dat is being trained by process 1234 (femtogpt train)". Readers take no lock and
are never held up. The kernel releases a flock when its process dies, so a killed run never leaves a
stale lock: a lock file left by kill -9 is simply locked again by the next writer.

The holder removes the lock file as it lets go, while still holding the lock; a process that opened
the file just before that finds, once it holds the lock, that the name now points elsewhere (or
nowhere) and tries again, so two writers can never both hold "the" lock. Re-entering the lock of a
file this process already holds just counts (flock would refuse a second descriptor of this process).
Not here: what a holder may do (io/checkpoint.py removes stale temp files of the file it saves, only
under this lock); where fcntl is missing (Windows), the lock is a no-op.
"""
from __future__ import annotations

import errno
import os
import time
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux or macOS
    fcntl = None

_held: dict[str, list] = {}  # real path of a model file -> [lock fd, depth], in this process


class LockError(OSError):
    """The lock cannot be taken; str() is one line naming the file."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


class ModelLocked(LockError):
    """Another process is writing the file; `pid` and `command` are the holder's (None if unknown)."""

    def __init__(self, message, pid=None, command=None):
        super().__init__(message)
        self.pid, self.command = pid, command


def _real(path) -> Path:
    return Path(os.path.realpath(path))  # symlinks (of the file or its folders) resolved: one file, one lock


def lock_path(path) -> Path:
    """The lock file of model file `path`: .NAME.lock beside the (real) file."""
    real = _real(path)
    return real.parent / f".{real.name}.lock"


def holds(path) -> bool:
    """Does this process hold the writer's lock of `path`?"""
    return str(_real(path)) in _held


@contextmanager
def model_lock(path, command="write"):
    """Hold the writer's lock of model file `path` for the body; `command` ("train", "init", ...)
    is what a second writer is told. Raises ModelLocked when another process holds it, LockError when
    the lock file cannot be made (e.g. the folder does not exist or is read-only)."""
    key = str(_real(path))
    if fcntl is None:
        yield
        return
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    lock_file = lock_path(path)
    try:  # from before the lock is taken: a Ctrl-C at any point still lets it go and removes the file
        _acquire(Path(path), lock_file, command, key)
        yield
    finally:
        entry = _held.pop(key, None)
        if entry is not None:
            _release(entry[0], lock_file)


def _acquire(path, lock_file, command, key):
    # registers _held[key] = [fd, 1] the moment the lock is held
    for _ in range(100):  # a retry only when a holder removed the file between our open and our lock
        try:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as e:
            raise LockError(f"{path}: cannot lock it for writing: {_reason(e, lock_file.parent)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise _locked_error(path, lock_file) from None
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                return  # this file system has no locks: go on unlocked, as before there were locks
            raise LockError(f"{path}: cannot lock it for writing: {_reason(e, lock_file.parent)}") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_file).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder removed this file as it let go: lock the new one
            os.close(fd)
            continue
        _held[key] = [fd, 1]
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{command}\n".encode())
        return
    raise LockError(f"{path}: cannot lock it for writing: its lock file {lock_file.name} keeps changing")


def _release(fd, lock_file):
    if fd is None:
        return
    try:
        os.unlink(lock_file)  # while still locked: see the module docstring
    except OSError:
        pass
    os.close(fd)


def _locked_error(path, lock_file):
    pid = command = None
    for _ in range(20):  # the holder writes its pid just after it locks: give it a moment
        try:
            fields = lock_file.read_text().split("\n")
            pid, command = int(fields[0]), fields[1] or None
            break
        except (OSError, ValueError, IndexError):
            time.sleep(0.01)
    if pid is None:
        return ModelLocked(f"{path} is being written by another femtogpt process; try again when it has finished")
    doing = "trained" if command == "train" else "written"
    return ModelLocked(f"{path} is being {doing} by process {pid} (femtogpt {command}); try again when it has "
                       f"finished", pid, command)


def _reason(e, directory):
    where = f"directory {str(directory)!r}"
    return {errno.ENOENT: f"{where} does not exist", errno.ENOTDIR: f"{where} is not a directory",
            errno.EACCES: f"permission denied ({where})", errno.EPERM: f"operation not permitted ({where})",
            errno.EROFS: f"read-only file system ({where})",
            errno.ENOSPC: "no space left on device"}.get(e.errno, e.strerror or str(e))
