"""femtogpt.atomic.write_atomically, the one writer every file goes through: each kind of content, the
old file kept on failure, no temp file left behind, permissions. The model file's own failure cases
(full disk, read-only directory, a kill mid-save) are in test_checkpoint.py."""
import errno
import os
import stat

import numpy as np
import pytest

from femtogpt.atomic import AtomicWriteError, write_atomically


def test_every_kind_of_content(tmp_path):
    write_atomically(tmp_path / "s.txt", "naïve\r\n")
    assert (tmp_path / "s.txt").read_bytes() == "naïve\r\n".encode()     # UTF-8, newlines untouched
    write_atomically(tmp_path / "b.bin", b"\x00\xff")
    write_atomically(tmp_path / "c.bin", iter([b"ab", memoryview(b"cd")]))
    write_atomically(tmp_path / "a.npy", lambda f: np.save(f, np.arange(3)))
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff" and (tmp_path / "c.bin").read_bytes() == b"abcd"
    assert np.load(tmp_path / "a.npy").tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "b.bin", "c.bin", "s.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("old")

    def broken(f):
        f.write(b"half")
        raise ValueError("boom")
    with pytest.raises(AtomicWriteError) as info:
        write_atomically(path, broken)
    assert str(info.value) == f"{path}: cannot save: ValueError: boom; the existing x.json is unchanged"
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_os_errors_keep_errno_and_strerror(tmp_path):
    missing = tmp_path / "no" / "x.json"
    with pytest.raises(AtomicWriteError) as info:
        write_atomically(missing, "x")
    e = info.value
    assert isinstance(e, OSError) and e.errno == errno.ENOENT and e.strerror == os.strerror(errno.ENOENT)
    assert str(e) == f"{missing}: cannot save: directory {str(missing.parent)!r} does not exist; nothing was written"
    with pytest.raises(AtomicWriteError, match="it is a directory"):
        write_atomically(tmp_path, "x")


def test_permissions_new_and_kept(tmp_path):
    new = tmp_path / "new.txt"
    mask = os.umask(0o022)
    try:
        write_atomically(new, "a")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o644
    kept = tmp_path / "kept.txt"
    kept.write_text("a")
    kept.chmod(0o600)
    write_atomically(kept, "b")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and kept.read_text() == "b"


def test_a_symlink_keeps_pointing_at_the_new_file(tmp_path):
    (tmp_path / "real.txt").write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to("real.txt")
    write_atomically(link, "new")
    assert link.is_symlink() and (tmp_path / "real.txt").read_text() == "new"
