"""The token cache: a dataset's token ids stored under the user's cache directory, keyed by the text's hash
and the tokenizer's hash, so training reads a corpus once per tokenizer. Not here: reading the corpus
(text/corpus.py) or encoding (text/tokenizer.py).

An entry is an .npz of the ids and the CRC-32 of their bytes; it is used only when the CRC matches,
the dtype is the tokenizer's and every id is below its vocabulary size. Anything else (a flipped bit,
a truncated or foreign file, an older .npy entry) is silently re-encoded and rewritten, never trusted.
"""
from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path

import numpy as np

from femtogpt.atomic import write_atomically
from femtogpt.text.corpus import read_text
from femtogpt.text.tokenizer import TextTokenizer, TokenizerError, Warn, _stderr, id_dtype


DEFAULT_MAX_MB = 2048  # the cache's size cap: $FEMTOGPT_CACHE_MAX_MB, else this
SUFFIX = ".ids.npz"


def default_cache_dir() -> Path:
    env = os.environ.get("FEMTOGPT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "femtogpt" / "tokens"


def max_cache_bytes() -> int:
    """The cap on the cache's size: $FEMTOGPT_CACHE_MAX_MB megabytes (a number; 0 keeps nothing),
    else DEFAULT_MAX_MB; an unreadable value is the default."""
    try:
        mb = float(os.environ.get("FEMTOGPT_CACHE_MAX_MB", DEFAULT_MAX_MB))
    except ValueError:
        mb = DEFAULT_MAX_MB
    return int(max(0.0, mb) * 1e6) if mb == mb and mb != float("inf") else int(DEFAULT_MAX_MB * 1e6)


def cache_entries(folder=None) -> list[Path]:
    """The cache's entries, least recently used first (a hit touches its entry)."""
    folder = Path(folder) if folder is not None else default_cache_dir()
    if not folder.is_dir():
        return []
    entries = []
    for f in folder.glob(f"*{SUFFIX}"):
        try:
            entries.append((f.stat().st_mtime, f))
        except OSError:
            continue
    return [f for _, f in sorted(entries)]


def prune(folder, max_bytes, keep=None) -> int:
    """Delete least recently used entries until the cache holds at most `max_bytes` (`keep`, the entry
    just written, goes last); returns how many were deleted."""
    entries = [f for f in cache_entries(folder) if f != keep] + ([keep] if keep is not None else [])
    sizes = {}
    for f in entries:
        try:
            sizes[f] = f.stat().st_size
        except OSError:
            sizes[f] = 0
    total, deleted = sum(sizes.values()), 0
    for f in entries:
        if total <= max_bytes:
            break
        try:
            f.unlink()
            deleted += 1
        except OSError:
            pass
        total -= sizes[f]
    return deleted


def clear(folder=None) -> tuple[int, int]:
    """Delete every entry; returns (entries, bytes) deleted."""
    n = size = 0
    for f in cache_entries(folder):
        try:
            size += f.stat().st_size
            f.unlink()
            n += 1
        except OSError:
            pass
    return n, size


def encode_file_cached(tokenizer: TextTokenizer, path, cache_dir=None, progress=None,
                       warn: Warn | None = None) -> np.ndarray:
    """A dataset (file or directory) as token ids (uint16, or uint32 past 65,536 tokens), cached
    under `cache_dir` by (text hash, tokenizer hash): a second call only reads and hashes the text.
    `progress`: a callable gets (characters encoded, total); True draws a bar on stderr."""
    warn = warn or _stderr
    text = read_text(path, warn)
    text_key = hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]
    tok_key = hashlib.sha256((tokenizer.to_json() + json.dumps(tokenizer.meta(), sort_keys=True))
                             .encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    file = folder / f"{tok_key}-{text_key}{SUFFIX}"
    ids = read_cache(file, tokenizer.vocab_size)
    if ids is None:
        try:
            ids = tokenizer.encode_large(text, progress, label=f"encoding {Path(path).name}")
        except TokenizerError as exc:
            raise TokenizerError(f"{path}: {exc}") from None
        _save_cache(file, ids, warn)
        prune(folder, max_cache_bytes(), keep=file)  # an entry bigger than the cap does not stay either
    else:
        try:
            os.utime(file)  # used now: the last to go when the cache is over its cap
        except OSError:
            pass
        if callable(progress):
            progress(len(text), len(text))
    if tokenizer.unk_id is not None:
        unknown = int(np.count_nonzero(ids == tokenizer.unk_id))
        if unknown:
            warn(f"warning: {path}: {unknown:,} <unk> tokens (characters not in the {tokenizer.kind} "
                 f"tokenizer's vocabulary)")
    return ids


def read_cache(file: Path, vocab_size: int) -> np.ndarray | None:
    """The ids of a cache entry, or None when it is missing or fails a check (see the module docstring)."""
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as entry:
            ids, crc = entry["ids"], entry["crc32"]
    except Exception:                      # damaged or foreign (BadZipFile, a bad header, ...): rebuilt
        return None
    if ids.ndim != 1 or ids.dtype != id_dtype(vocab_size) or crc.shape != () or crc.dtype != np.uint32:
        return None
    if int(crc) != zlib.crc32(ids.tobytes()) or (ids.size and int(ids.max()) >= vocab_size):
        return None
    return ids


def _save_cache(file: Path, ids: np.ndarray, warn: Warn) -> None:
    crc = np.uint32(zlib.crc32(ids.tobytes()))
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(file, lambda f: np.savez(f, ids=ids, crc32=crc))   # a reader never sees half a file
    except OSError as exc:
        warn(f"note: cannot write the token cache in {file.parent} ({exc.strerror or exc}); continuing without it")
