"""The corpus: which files a dataset path stands for, and its text as training and tokenizers read it.
Not here: encoding (text/tokenizer.py) or caching ids (text/token_cache.py)."""
from __future__ import annotations

from pathlib import Path

from femtogpt.text.tokenizer import TokenizerError, Warn, _stderr


def dataset_files(path: Path) -> list[Path]:
    """The files of a dataset: the file itself, or a directory's files (recursive, sorted by path,
    hidden ones and __pycache__ skipped). `read_text` reads exactly these."""
    if path.is_file():
        return [path]
    if not path.exists():
        raise TokenizerError(f"{path}: no such file or directory")
    files = sorted(p for p in path.rglob("*") if p.is_file() and not any(
        part.startswith(".") or part == "__pycache__" for part in p.relative_to(path).parts))
    if not files:
        raise TokenizerError(f"{path}: the directory has no files")
    return files


def read_text(path, warn: Warn | None = None) -> str:
    """A file's text, or a directory's files (recursive, sorted by path, hidden ones skipped) joined
    with a newline where one is missing. Invalid UTF-8 is replaced by U+FFFD, with a note."""
    path = Path(path)
    warn = warn or _stderr
    parts, bad = [], []
    for f in dataset_files(path):
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
