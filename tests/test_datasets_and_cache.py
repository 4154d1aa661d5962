"""Rough edges of issue 15: a directory dataset is its text files only, and its fingerprint covers
exactly those; the token cache has a size cap and `cache clear`; commands that write a file refuse
to overwrite one without --force."""
import os
import time

import pytest

from femtogpt.text.corpus import dataset_listing, read_text
from femtogpt.text.fingerprint import dataset_fingerprint
from femtogpt.text.token_cache import cache_entries, encode_file_cached, prune
from femtogpt.text.build import build_tokenizer
from tests.run_cli import run

PNG = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256))


def test_a_directory_with_a_png_a_git_folder_and_a_venv_is_read_as_its_text_files(tmp_path):
    data, plain = tmp_path / "data", tmp_path / "plain"
    for folder in (data, plain):
        (folder / "sub").mkdir(parents=True)
        (folder / "a.txt").write_text("alpha\n")
        (folder / "sub" / "b.py").write_text("beta = 1\n")
    (data / "logo.png").write_bytes(PNG)
    (data / "model.dat").write_bytes(b"\x89\xa6format\0\0\0")
    (data / ".git" / "objects").mkdir(parents=True)
    (data / ".git" / "objects" / "pack.txt").write_text("not part of the corpus\n")
    (data / "env" / "lib").mkdir(parents=True)
    (data / "env" / "pyvenv.cfg").write_text("home = /usr\n")
    (data / "env" / "lib" / "site.py").write_text("import os\n")
    files, skipped = dataset_listing(data)
    assert [f.relative_to(data).as_posix() for f in files] == ["a.txt", "sub/b.py"]
    assert [f.name for f in skipped] == ["logo.png", "model.dat"]
    notes = []
    assert read_text(data, notes.append) == "alpha\nbeta = 1\n"
    assert notes == [f"note: {data}: skipped 2 binary files (logo.png, and 1 more)"]
    assert dataset_fingerprint(data) == dataset_fingerprint(plain)  # exactly the files read


def test_a_directory_of_binary_files_only_is_one_line(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.png").write_bytes(PNG)
    (tmp_path / "m.dat").write_bytes(b"")
    result = run("train-bpe", "--dataset", tmp_path / "d", "--tokenizer-data", tmp_path / "t.json", ok=False)
    assert result.exit_code == 1 and "the directory has no text files (1 binary files skipped)" in result.output


def test_the_token_cache_keeps_at_most_its_cap_least_recently_used_first(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    tok = build_tokenizer("ascii")
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"d{i}.txt")
        paths[-1].write_text(f"text number {i} " * 2000)
    for i, p in enumerate(paths):
        encode_file_cached(tok, p, cache_dir=cache)
        past = time.time() - 100 + i  # distinct ages, all older than now
        os.utime(cache_entries(cache)[-1], (past, past))
    entries = cache_entries(cache)
    assert len(entries) == 3
    size = entries[0].stat().st_size
    encode_file_cached(tok, paths[0], cache_dir=cache)  # a hit: d0's entry becomes the newest
    assert cache_entries(cache)[-1] == entries[0]
    assert prune(cache, 2 * size + size // 2) == 1 and entries[1] not in cache_entries(cache)
    monkeypatch.setenv("FEMTOGPT_CACHE_MAX_MB", "0")  # a cap of 0 keeps nothing, not even a new entry
    ids = encode_file_cached(tok, tmp_path / "d1.txt", cache_dir=cache)
    assert cache_entries(cache) == [] and len(ids) == len(paths[1].read_text())


def test_cache_clear_and_info(tmp_path, monkeypatch):
    monkeypatch.setenv("FEMTOGPT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "d.txt").write_text("hello " * 100)
    encode_file_cached(build_tokenizer("ascii"), tmp_path / "d.txt")
    assert run("cache", "info").output.startswith(f"{tmp_path / 'cache'}: 1 entry, ")
    assert run("cache", "clear").output.startswith("Deleted 1 entry (")
    assert cache_entries() == [] and run("cache", "info").output.startswith(f"{tmp_path / 'cache'}: 0 entries")


@pytest.mark.parametrize("command", [
    ["train-bpe", "--dataset", "d.txt", "--vocab-size", 260, "--tokenizer-data", "OUT"],
    ["dummy-data", "simple_dummy", "--size", 5, "--out", "OUT"],
])
def test_commands_that_write_a_file_refuse_to_overwrite_it_without_force(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.txt").write_text("some text to learn from " * 50)
    (tmp_path / "OUT").write_text("precious")
    args = [str(a) for a in command]
    result = run(*args, ok=False)
    assert result.exit_code == 1 and "OUT already exists; pass --force to overwrite it" in result.output
    assert (tmp_path / "OUT").read_text() == "precious"
    run(*args, "--force")
    assert (tmp_path / "OUT").read_text() != "precious"
