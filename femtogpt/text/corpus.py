"""The corpus: which files a dataset path stands for, and its text as training and tokenizers read it.
Not here: encoding (text/tokenizer.py) or caching ids (text/token_cache.py)."""
from __future__ import annotations

from pathlib import Path

from femtogpt.text.tokenizer import TokenizerError, Warn, _stderr


SNIFF_BYTES = 8192  # a file with a NUL byte in its first SNIFF_BYTES is binary (as git and grep decide)


def dataset_files(path: Path) -> list[Path]:
    """The files of a dataset: the file itself, or a directory's text files (`dataset_listing`).
    `read_text` reads exactly these, and the fingerprint hashes exactly these."""
    return dataset_listing(path)[0]


def dataset_listing(path: Path) -> tuple[list[Path], list[Path]]:
    """(files, skipped): a file is itself; a directory is its text files, recursive, sorted by path.
    Skipped without a look: hidden files and folders (.git, .venv, ...), __pycache__ and any folder
    holding a pyvenv.cfg (a virtual environment by another name). Skipped and listed: binary files
    (a NUL byte in their first 8 KB: images, archives, model files)."""
    path = Path(path)
    if path.is_file():
        return [path], []
    if not path.exists():
        raise TokenizerError(f"{path}: no such file or directory")
    files, skipped = [], []
    for folder, subfolders, names in _walk(path):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d != "__pycache__"
                               and not (folder / d / "pyvenv.cfg").is_file())
        for name in names:
            f = folder / name
            if name.startswith(".") or not f.is_file():
                continue
            (skipped if _is_binary(f) else files).append(f)
    if not files:
        more = f" ({len(skipped)} binary files skipped)" if skipped else ""
        raise TokenizerError(f"{path}: the directory has no text files{more}")
    return sorted(files), sorted(skipped)


def _walk(path):
    import os

    for folder, subfolders, names in os.walk(path):
        yield Path(folder), subfolders, names


def _is_binary(f):
    try:
        with open(f, "rb") as fh:
            return b"\0" in fh.read(SNIFF_BYTES)
    except OSError:
        return False  # read_text reports it


def read_text(path, warn: Warn | None = None) -> str:
    """A file's text, or a directory's text files (`dataset_listing`; the binary ones skipped are
    named in a note) joined with a newline where one is missing. Invalid UTF-8 is replaced by U+FFFD, with a note."""
    path = Path(path)
    warn = warn or _stderr
    parts, bad = [], []
    files, skipped = dataset_listing(path)
    if skipped:
        more = f", and {len(skipped) - 1} more" if len(skipped) > 1 else ""
        warn(f"note: {path}: skipped {len(skipped)} binary file{'s' if len(skipped) > 1 else ''} "
             f"({skipped[0].relative_to(path)}{more})")
    for f in files:
        data = f.read_bytes()
        try:
            part = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad.append(f"{f} at byte {exc.start}")
            part = data.decode("utf-8", errors="replace")
        if parts and part and not parts[-1].endswith("\n"):
            parts.append("\n")             # keep files apart: "end" + "start" is not one word
        if part:
            parts.append(part)
    if bad:
        more = f" and {len(bad) - 1} more files" if len(bad) > 1 else ""
        warn(f"note: {bad[0]}{more} is not valid UTF-8; invalid bytes were read as U+FFFD")
    text = "".join(parts)
    if not text:
        raise TokenizerError(f"{path}: is empty")
    return text
