"""The token cache: a dataset's token ids stored as .npy under the user's cache directory, keyed by the
text's hash and the tokenizer's hash, so training reads a corpus once per tokenizer. Not here: reading the
corpus (text/corpus.py) or encoding (text/tokenizer.py)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from femtogpt.atomic import write_atomically
from femtogpt.text.corpus import read_text
from femtogpt.text.tokenizer import TextTokenizer, Warn, _stderr, id_dtype


def default_cache_dir() -> Path:
    env = os.environ.get("FEMTOGPT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "femtogpt" / "tokens"


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
    file = folder / f"{tok_key}-{text_key}.npy"
    try:
        ids = np.load(file, allow_pickle=False) if file.exists() else None
    except (OSError, ValueError):
        ids = None                         # a damaged cache entry is rebuilt, never trusted
    if ids is None or ids.dtype != id_dtype(tokenizer.vocab_size) or ids.ndim != 1:
        ids = tokenizer.encode_large(text, progress, label=f"encoding {Path(path).name}")
        _save_cache(file, ids, warn)
    elif callable(progress):
        progress(len(text), len(text))
    if tokenizer.unk_id is not None:
        unknown = int(np.count_nonzero(ids == tokenizer.unk_id))
        if unknown:
            warn(f"warning: {path}: {unknown:,} <unk> tokens (characters not in the {tokenizer.kind} "
                 f"tokenizer's vocabulary)")
    return ids


def _save_cache(file: Path, ids: np.ndarray, warn: Warn) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(file, lambda f: np.save(f, ids, allow_pickle=False))   # a reader never sees half a file
    except OSError as exc:
        warn(f"note: cannot write the token cache in {file.parent} ({exc.strerror or exc}); continuing without it")
