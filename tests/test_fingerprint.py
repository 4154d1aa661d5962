"""text/fingerprint.py: the dataset hash in the TrainSession log covers exactly the files read_text reads,
and a single file keeps the value older model files store."""
import hashlib

import pytest

from femtogpt.text.corpus import read_text
from femtogpt.text.fingerprint import dataset_fingerprint
from femtogpt.text.tokenizer import TokenizerError


def test_a_single_files_fingerprint_is_unchanged(tmp_path):
    f = tmp_path / "dataset.txt"
    f.write_bytes(b"jakogi;\nbafude;\n")
    legacy = hashlib.sha256(b"dataset.txt" + f.read_bytes()).hexdigest()[:32]   # the formula of 22cf15c
    assert dataset_fingerprint(f) == legacy == "ea6ea1a426493dfee9c9c05766125d87"
    assert dataset_fingerprint(str(f)) == legacy


def test_a_directory_hashes_the_files_read_text_reads(tmp_path):
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("one\n")
    (d / "sub" / "b.txt").write_text("two\n")
    before, text = dataset_fingerprint(d), read_text(d)
    # hidden files and __pycache__ are not read, so they do not count
    (d / ".notes").write_text("private")
    (d / "__pycache__").mkdir()
    (d / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (d / ".git").mkdir()
    (d / ".git" / "HEAD").write_text("ref")
    assert read_text(d) == text and dataset_fingerprint(d) == before
    (d / "sub" / "b.txt").write_text("two!\n")            # what is read counts, and so do the names
    assert dataset_fingerprint(d) != before
    (d / "sub" / "b.txt").write_text("two\n")
    (d / "sub" / "b.txt").rename(d / "sub" / "c.txt")
    assert dataset_fingerprint(d) != before
    expected = hashlib.sha256(b"a.txt" + b"one\n" + b"sub/c.txt" + b"two\n").hexdigest()[:32]
    assert dataset_fingerprint(d) == expected


def test_no_dataset_no_fingerprint(tmp_path):
    with pytest.raises(TokenizerError, match="no such file"):
        dataset_fingerprint(tmp_path / "missing")
