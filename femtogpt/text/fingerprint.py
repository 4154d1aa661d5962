"""A dataset's fingerprint: a content hash of exactly the files `read_text` reads (text/corpus.py
`dataset_files`: a file, or a directory's text files, without hidden folders such as .git and .venv).

The TrainSession log stores it, and `train --keep-best` compares it to tell whether an existing best
file was judged on the same validation data. Not here: which files a dataset is (text/corpus.py).
"""
import hashlib
from pathlib import Path

from femtogpt.text.corpus import dataset_files


def dataset_fingerprint(path):
    """32 hex digits: SHA-256 over each file's name and bytes, in `dataset_files` order. A file hashes
    its base name; a directory's files hash their paths relative to it (a renamed directory keeps its
    fingerprint). Raises TokenizerError where `read_text` would (missing path, empty directory)."""
    p = Path(path)
    h = hashlib.sha256()
    for f in dataset_files(p):
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:32]
