"""Tokenizers: ascii, char, byte and BPE, each one a Hugging Face `tokenizers.Tokenizer`.

Here: `TextTokenizer` (a HF tokenizer plus our settings; a model file stores its `to_json()` and
`meta()`), `build_tokenizer` for the kinds of `init --tokenizer`, `train_bpe`, `load_tokenizer_file`
(a HF tokenizer.json, a JSON array of token strings, or the fork's own tokenizer JSON), `read_text`
for a file or a directory, and `encode_file_cached`, the token-id cache for training data.
Not here: the CLI (femtogpt/cli/text.py) and the model file (checkpoint.py).

On purpose unlike the reference (reference §4): ids are deterministic, never a random permutation; a
literal "<unk>" in the text is five ordinary characters; BPE replays its merges instead of a greedy
longest match; train-bpe always terminates; reserved tokens are `<|reserved_000|>`, ... at the end.

Filling a reserved token later: `tok.replace_reserved("<|reserved_000|>", "<|endoftext|>", special=True)`
keeps every id and the vocabulary size, so a model file only needs the new `to_json()`/`meta()`
stored next to its unchanged tensors.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

KINDS = ("ascii", "char", "byte", "bpe")
UNK = "<unk>"
RESERVED = "<|reserved_{:03d}|>"
_RESERVED_RE = re.compile(r"<\|reserved_(\d{3,})\|>\Z")
# the reference's 100: \t \n \v \f \r and ' '..'~', in code-point order so ids never move
ASCII_CHARS = "\t\n\x0b\x0c\r" + "".join(map(chr, range(32, 127)))
CHUNK_CHARS = 1 << 20                      # encode and train in ~1M-character pieces
_UNK_SCORE = -1e9                          # token lists: "<unk>" is never chosen to spell real text

Warn = Callable[[str], None]


class TokenizerError(ValueError):
    """Bad tokenizer input or data; the message is one line naming the file or flag."""


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@contextmanager
def _progress_display(progress, label: str):
    """`progress` as a callback: a callable is used as is; True draws a rich bar on stderr."""
    if callable(progress) or not progress:
        yield progress if callable(progress) else None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(label), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _byte_table() -> dict[int, str]:
    # GPT-2's byte -> printable character table: the alphabet of the ByteLevel pre-tokenizer
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_TO_CHAR = _byte_table()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def id_dtype(vocab_size: int) -> type:
    """The smallest unsigned dtype that holds every id: uint16 up to 65,536 tokens, else uint32."""
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


class TextTokenizer:
    """A HF `Tokenizer` plus our settings. Special tokens (our reserved ones, or any that a loaded
    tokenizer.json marks special) are never matched in text (`encode_special_tokens`): they enter a
    sequence only by id. Non-special added tokens are matched in text as usual."""

    def __init__(self, hf: Tokenizer, kind: str, case_insensitive: bool, notes: Iterable[str] = ()):
        if kind not in KINDS:
            raise TokenizerError(f"unknown tokenizer kind {kind!r} (expected one of {', '.join(KINDS)})")
        hf.encode_special_tokens = True    # not saved in the JSON, so set on every load
        self.hf, self.kind, self.case_insensitive = hf, kind, bool(case_insensitive)
        self.notes = list(notes)           # one-line remarks from building, for the CLI to print
        spec = json.loads(hf.to_str())
        self.model_type = spec["model"]["type"]
        self.byte_level = (spec.get("decoder") or {}).get("type") == "ByteLevel"
        vocab = hf.get_vocab(with_added_tokens=True)
        self.vocab_size = max(vocab.values()) + 1 if vocab else 0
        self.unk_token = spec["model"].get("unk_token")
        if self.unk_token is None and spec["model"].get("unk_id") is not None:   # Unigram
            self.unk_token = spec["model"]["vocab"][spec["model"]["unk_id"]][0]
        self.unk_id = hf.token_to_id(self.unk_token) if self.unk_token else None
        self.reserved = [t["content"] for t in spec.get("added_tokens", [])
                         if t.get("special") and _RESERVED_RE.match(t["content"])]

    # encoding ---------------------------------------------------------------------------------
    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.hf.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def encode_large(self, text: str, progress=None, chunk_chars: int = CHUNK_CHARS,
                     label: str = "encoding") -> np.ndarray:
        """`encode` for big texts: pieces cut at line starts, encoded in parallel batches; ids as
        `id_dtype(vocab_size)`. Equal to `encode` for ascii, char, byte and byte-level BPE.
        `progress`: a callable gets (characters done, total); True draws a bar on stderr."""
        pieces = split_for_encoding(text, chunk_chars)
        batch = getattr(self.hf, "encode_batch_fast", self.hf.encode_batch)   # no offsets: faster
        group = 2 * (os.cpu_count() or 1)
        out, done = [], 0
        with _progress_display(progress, label) as callback:
            for i in range(0, len(pieces), group):
                part = pieces[i:i + group]
                out += [np.asarray(e.ids, dtype=id_dtype(self.vocab_size))
                        for e in batch(part, add_special_tokens=False)]
                done += sum(map(len, part))
                if callback:
                    callback(done, len(text))
        return np.concatenate(out) if out else np.zeros(0, id_dtype(self.vocab_size))

    def decode(self, ids) -> str:
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise TokenizerError(f"token id {bad[0]} is outside the vocabulary (0..{self.vocab_size - 1})")
        return self.hf.decode(ids, skip_special_tokens=False)

    def count_unknown(self, text: str) -> int:
        """How many `<unk>` tokens `text` gives (0 for byte and byte-level BPE: nothing is unknown)."""
        return 0 if self.unk_id is None else int(np.count_nonzero(self.encode(text) == self.unk_id))

    # listing ------------------------------------------------------------------------------------
    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for (byte-level tokens map back through GPT-2's table)."""
        tok = self.hf.id_to_token(int(token_id))
        if tok is None:
            return b""
        if self.byte_level and int(token_id) not in self._added_ids():
            return bytes(CHAR_TO_BYTE[c] for c in tok)
        return tok.encode("utf-8")

    def token_str(self, token_id: int) -> str:
        """One token as readable text; bytes that are not whole UTF-8 characters print as \\xNN."""
        return self.token_bytes(token_id).decode("utf-8", errors="backslashreplace")

    def _added_ids(self) -> set[int]:
        # added tokens (reserved, replaced) are plain text, not byte-level characters
        if not hasattr(self, "_added_cache"):
            self._added_cache = set(self.hf.get_added_tokens_decoder())
        return self._added_cache

    # saving -----------------------------------------------------------------------------------
    def to_json(self) -> str:
        return self.hf.to_str()

    def meta(self) -> dict:
        return {"kind": self.kind, "case_insensitive": self.case_insensitive,
                "reserve_tokens": len(self.reserved), "unk_token": self.unk_token or "",
                "vocab_size": self.vocab_size}

    @classmethod
    def from_json(cls, json_text: str, meta: dict) -> "TextTokenizer":
        """Rebuild from a model file's `to_json()` and `meta()`: the same ids as when it was saved."""
        try:
            hf = Tokenizer.from_str(json_text)
        except Exception as exc:                                   # the Rust error is one long line
            raise TokenizerError(f"the stored tokenizer JSON cannot be read: {exc}") from None
        meta = meta or {}
        tok = cls(hf, meta.get("kind", "bpe"), meta.get("case_insensitive", _has_lowercase(hf)))
        if meta.get("vocab_size") not in (None, tok.vocab_size):
            raise TokenizerError(f"the stored tokenizer has {tok.vocab_size} tokens but its settings say "
                                 f"{meta['vocab_size']}")
        return tok

    def summary(self) -> str:
        how = self.kind
        if self.kind == "bpe" and self.model_type != "BPE":
            how = "bpe (token list)" if self.model_type == "Unigram" else f"bpe ({self.model_type})"
        extra = f" ({len(self.reserved)} reserved)" if self.reserved else ""
        case = "case-insensitive" if self.case_insensitive else "case-sensitive"
        return f"{how}, {self.vocab_size} tokens{extra}, {case}"

    def replace_reserved(self, reserved: str, new: str, special: bool = False) -> "TextTokenizer":
        """Give a reserved token's id to a new token: no id moves and V stays, so a model's tensors
        are untouched. `special=False` (a plain added token) is matched in text from now on;
        `special=True` (e.g. "<|endoftext|>") only ever enters by id."""
        if reserved not in self.reserved:
            raise TokenizerError(f"{reserved!r} is not a reserved token of this tokenizer")
        if not new or self.hf.token_to_id(new) is not None:
            raise TokenizerError(f"{new!r} is empty or already a token")
        spec = json.loads(self.to_json())
        for entry in spec["added_tokens"]:
            if entry["content"] == reserved:
                entry.update(content=new, special=bool(special), normalized=False)
        return TextTokenizer(Tokenizer.from_str(json.dumps(spec)), self.kind, self.case_insensitive)


# building -----------------------------------------------------------------------------------------
def _lowercase_if(hf: Tokenizer, case_insensitive: bool) -> None:
    if case_insensitive and not _has_lowercase(hf):
        hf.normalizer = (normalizers.Lowercase() if hf.normalizer is None
                         else normalizers.Sequence([normalizers.Lowercase(), hf.normalizer]))


def _has_lowercase(hf: Tokenizer) -> bool:
    def walk(node):                        # a Lowercase anywhere in a (possibly nested) normalizer
        if isinstance(node, dict):
            return (node.get("type") == "Lowercase" or node.get("type") == "BertNormalizer"
                    and bool(node.get("lowercase")) or any(map(walk, node.values())))
        return isinstance(node, list) and any(map(walk, node))
    return walk(json.loads(hf.to_str()).get("normalizer"))


def _char_level(chars: list[str], kind: str, case_insensitive: bool, notes=()) -> TextTokenizer:
    # a BPE with no merges and no pre-tokenizer: each character is one token, anything else <unk>;
    # twice as fast as WordLevel + a per-character Split, and "<unk>" can never be formed from text
    vocab = {UNK: 0, **{c: i + 1 for i, c in enumerate(chars)}}
    hf = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK, fuse_unk=False))
    hf.decoder = decoders.Fuse()           # concatenate; the default decoder joins with spaces
    _lowercase_if(hf, case_insensitive)
    return TextTokenizer(hf, kind, case_insensitive, notes)


def _byte_level(hf: Tokenizer, case_insensitive: bool) -> Tokenizer:
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)   # True breaks the round trip
    hf.decoder = decoders.ByteLevel()
    _lowercase_if(hf, case_insensitive)
    return hf


def _with_reserved(tok: TextTokenizer, n: int) -> TextTokenizer:
    """Make sure `n` reserved placeholders exist, appended after every other id. A file that already
    has them (train-bpe --reserve-tokens) does not get a second set, unlike the reference."""
    if n < 0:
        raise TokenizerError(f"--reserve-tokens must be 0 or more, got {n}")
    have = len(tok.reserved)
    if have >= n:
        if n and have > n:
            tok.notes.append(f"the tokenizer already has {have} reserved tokens; none added")
        return tok
    numbers = [int(_RESERVED_RE.match(r).group(1)) for r in tok.reserved]
    first = max(numbers) + 1 if numbers else 0
    names = [RESERVED.format(first + i) for i in range(n - have)]
    clash = [s for s in names if tok.hf.token_to_id(s) is not None]
    if clash:
        raise TokenizerError(f"cannot reserve {clash[0]!r}: it is already an ordinary token")
    tok.hf.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in names])
    return TextTokenizer(tok.hf, tok.kind, tok.case_insensitive, tok.notes)


def build_tokenizer(kind: str, data_path=None, case_insensitive: bool = False, reserve_tokens: int = 0,
                    max_vocab: int | None = None, warn: Warn | None = None) -> TextTokenizer:
    """A tokenizer for `init --tokenizer KIND`. `data_path`: the text for `char` (file or directory),
    the tokenizer JSON for `bpe` (None: the shipped default). `max_vocab` caps `char`'s vocabulary
    including `<unk>` (reserved tokens come on top)."""
    if kind == "ascii":
        chars = [c for c in ASCII_CHARS if not (case_insensitive and "A" <= c <= "Z")]
        tok = _char_level(chars, "ascii", case_insensitive)
    elif kind == "char":
        tok = _char_tokenizer(data_path, case_insensitive, max_vocab, warn)
    elif kind == "byte":
        vocab = {BYTE_TO_CHAR[b]: b for b in range(256)}          # id = the byte's value
        tok = TextTokenizer(_byte_level(Tokenizer(models.BPE(vocab=vocab, merges=[])), case_insensitive),
                            "byte", case_insensitive)
    elif kind == "bpe":
        tok = (load_tokenizer_file(data_path, case_insensitive) if data_path is not None
               else parse_tokenizer_json(default_tokenizer_json(), "the shipped tokenizer.json", case_insensitive))
    else:
        raise TokenizerError(f"--tokenizer: unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    return _with_reserved(tok, reserve_tokens)


def _char_tokenizer(data_path, case_insensitive, max_vocab, warn) -> TextTokenizer:
    if data_path is None:
        raise TokenizerError("--tokenizer-data: the char tokenizer needs a text file or directory")
    if max_vocab is not None and max_vocab < 2:
        raise TokenizerError(f"--max-vocab must be at least 2 (<unk> and one character), got {max_vocab}")
    text = read_text(data_path, warn)
    if case_insensitive:
        text = normalizers.Lowercase().normalize_str(text)     # count what the tokenizer will see
    counts = Counter(text)
    chars = sorted(counts, key=lambda c: (-counts[c], ord(c)))  # most frequent first, ties by code point
    notes = []
    if max_vocab is not None and len(chars) > max_vocab - 1:
        dropped = chars[max_vocab - 1:]
        lost = sum(counts[c] for c in dropped)
        notes.append(f"--max-vocab {max_vocab}: the {len(dropped)} rarest characters of {data_path} "
                     f"({lost} of {len(text)}) will be <unk>")
        chars = chars[:max_vocab - 1]
    return _char_level(chars, "char", case_insensitive, notes)


# loading tokenizer files ------------------------------------------------------------------------
def default_tokenizer_json() -> str:
    """The shipped default BPE tokenizer (femtogpt/data/tokenizer.json, package data)."""
    from importlib.resources import files
    return files("femtogpt").joinpath("data", "tokenizer.json").read_text(encoding="utf-8")


def load_tokenizer_file(path, case_insensitive: bool = False) -> TextTokenizer:
    """A tokenizer JSON: Hugging Face tokenizer.json (ours from train-bpe, or any), a JSON array of
    token strings, or the fork's own `{"unit", "case_sensitive", "unk", "tokens"}` file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenizerError(f"{path}: no such tokenizer file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenizerError(f"{path}: cannot be read as a tokenizer JSON ({exc.__class__.__name__})") from None
    return parse_tokenizer_json(text, str(path), case_insensitive)


def parse_tokenizer_json(text: str, name: str, case_insensitive: bool = False) -> TextTokenizer:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TokenizerError(f"{name}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, list):
        return from_token_list(data, case_insensitive, name)
    if isinstance(data, dict) and "model" in data:
        try:
            hf = Tokenizer.from_str(text)
        except Exception as exc:
            raise TokenizerError(f"{name}: not a valid Hugging Face tokenizer.json ({exc})") from None
        hf.no_truncation()                 # a foreign file may truncate or pad: we encode whole texts
        hf.no_padding()
        _lowercase_if(hf, case_insensitive)
        return TextTokenizer(hf, "bpe", _has_lowercase(hf))
    if isinstance(data, dict) and {"unit", "tokens", "unk"} <= set(data):
        try:
            tokens = {int(k): bytes(v) for k, v in data["tokens"].items()}
        except (TypeError, ValueError):
            raise TokenizerError(f"{name}: the fork tokenizer's `tokens` must map ids to byte lists") from None
        if data["unit"] != "Char":
            raise TokenizerError(f"{name}: fork tokenizers with unit {data['unit']!r} are not supported")
        return from_fork_tokens(tokens, int(data["unk"]), bool(data.get("case_sensitive", True)), name)
    raise TokenizerError(f"{name}: not a tokenizer JSON (expected a Hugging Face tokenizer.json, a JSON "
                         "array of token strings, or a fork tokenizer JSON)")


def _unigram(pieces: list[str], unk_id: int, case_insensitive: bool, name: str) -> TextTokenizer:
    # a Unigram with equal scores spells text with the fewest tokens (Viterbi, deterministic);
    # unknown characters become one <unk> per run
    if len(set(pieces)) != len(pieces):
        dup = next(p for p in pieces if pieces.count(p) > 1)
        raise TokenizerError(f"{name}: token {dup!r} appears twice")
    vocab = [(p, _UNK_SCORE if i == unk_id else -1.0) for i, p in enumerate(pieces)]
    hf = Tokenizer(models.Unigram(vocab, unk_id, False))
    hf.decoder = decoders.Fuse()
    _lowercase_if(hf, case_insensitive)
    return TextTokenizer(hf, "bpe", case_insensitive)


def from_token_list(tokens: list, case_insensitive: bool = False, name: str = "token list") -> TextTokenizer:
    """The reference's plain JSON array: `<unk>` is id 0, then the strings in list order (repeats
    dropped). Text is spelled with the fewest tokens from the list, not greedily."""
    if not all(isinstance(t, str) for t in tokens):
        raise TokenizerError(f"{name}: a token list must hold only strings")
    if any(t == "" for t in tokens):
        raise TokenizerError(f"{name}: entry {tokens.index('')} is an empty string")
    if case_insensitive:
        tokens = [normalizers.Lowercase().normalize_str(t) for t in tokens]
    pieces = list(dict.fromkeys([UNK, *tokens]))
    return _unigram(pieces, 0, case_insensitive, name)


def from_fork_tokens(tokens: dict[int, bytes], unk_id: int, case_sensitive: bool,
                     name: str = "fork tokenizer") -> TextTokenizer:
    """The fork's own vocabulary (Char unit) with its ids kept, e.g. for an imported fork model."""
    if sorted(tokens) != list(range(len(tokens))) or unk_id not in tokens:
        raise TokenizerError(f"{name}: token ids must be 0..{len(tokens) - 1} and include unk {unk_id}")
    try:
        pieces = [tokens[i].decode("utf-8") for i in range(len(tokens))]
    except UnicodeDecodeError:
        raise TokenizerError(f"{name}: a token is not valid UTF-8") from None
    return _unigram(pieces, unk_id, not case_sensitive, name)


# text ---------------------------------------------------------------------------------------------
def _dataset_files(path: Path) -> list[Path]:
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
    for f in _dataset_files(path):
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


def split_for_encoding(text: str, chunk_chars: int = CHUNK_CHARS) -> list[str]:
    """Cut text into ~chunk_chars pieces just after a newline that has non-space on both sides: the
    GPT-2 pre-tokenizer regex never joins across such a point, so the ids equal one big encode."""
    pieces, start, n = [], 0, len(text)
    while n - start > chunk_chars:
        lo, hi = start + chunk_chars // 2, start + chunk_chars
        i = text.rfind("\n", lo, hi)
        while i > lo and (text[i - 1].isspace() or text[i + 1].isspace()):
            i = text.rfind("\n", lo, i)
        cut = i + 1 if i > lo else hi      # no clean point (binary-looking data): a hard cut
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


# train-bpe ----------------------------------------------------------------------------------------
def train_bpe(text_or_paths, vocab_size: int, reserve_tokens: int = 0, case_insensitive: bool = False,
              progress=None, warn: Warn | None = None) -> tuple[TextTokenizer, str]:
    """Byte-level BPE with Hugging Face's trainer; stops when no pair occurs twice, so it ends on any
    corpus. `text_or_paths`: a str is the text itself; a path or a list of paths is read.
    `progress`: True shows the trainer's own bars on stderr; a callable gets (chars fed, total).
    Returns the tokenizer and a note ("" or why the vocabulary is smaller than asked)."""
    if vocab_size < 256:
        raise TokenizerError(f"--vocab-size must be at least 256 (the byte alphabet), got {vocab_size}")
    if isinstance(text_or_paths, str):
        text = text_or_paths
        if not text:
            raise TokenizerError("the corpus is empty")
    else:
        paths = [text_or_paths] if isinstance(text_or_paths, os.PathLike) else list(text_or_paths)
        text = "\n".join(read_text(p, warn) for p in paths)
    hf = _byte_level(Tokenizer(models.BPE()), case_insensitive)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=progress is True,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    pieces = split_for_encoding(text)

    def feed():
        done = 0
        for piece in pieces:
            yield piece
            done += len(piece)
            if callable(progress):
                progress(done, len(text))

    hf.train_from_iterator(feed(), trainer, length=len(pieces))
    got = hf.get_vocab_size()
    note = "" if got >= vocab_size else (
        f"the corpus allows only {got} tokens, fewer than the {vocab_size} asked for "
        "(no pair of tokens occurs twice any more)")
    return _with_reserved(TextTokenizer(hf, "bpe", case_insensitive), reserve_tokens), note


def write_atomic(path, text: str) -> None:
    """Write via a temporary file in the same directory and rename: never a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)       # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# token cache --------------------------------------------------------------------------------------
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
    tmp = None
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tokens.", suffix=".npy", dir=file.parent)
        with os.fdopen(fd, "wb") as f:
            np.save(f, ids, allow_pickle=False)
        os.replace(tmp, file)              # atomic: a reader never sees half a file
    except OSError as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        warn(f"note: cannot write the token cache in {file.parent} ({exc.strerror}); continuing without it")
