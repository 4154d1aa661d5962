"""The tokenizer: `TextTokenizer`, a Hugging Face `tokenizers.Tokenizer` plus our settings (a model file
stores its `to_json()` and `meta()`), the kinds (config.TOKENIZER_KINDS: ascii, char, byte, bpe), the id dtype, and how
big texts are cut for parallel encoding.

Not here: calls into Rust made one-line errors, and `TokenizerError` (text/rust_calls.py, re-exported here),
building one of each kind (text/build.py), reading tokenizer files (text/tokenizer_files.py),
reading a corpus (text/corpus.py), BPE training (text/bpe.py), the token cache (text/token_cache.py), the
CLI (femtogpt/cli/text.py), the model file (femtogpt/io/model_file.py).

On purpose unlike the reference (reference §4): ids are deterministic, never a random permutation; a
literal "<unk>" in the text is five ordinary characters; BPE replays its merges instead of a greedy
longest match; train-bpe always terminates; reserved tokens are `<|reserved_000|>`, ... at the end.

Filling a reserved token later: `tok.replace_reserved("<|reserved_000|>", "<|endoftext|>", special=True)`
keeps every id and the vocabulary size, so a model file only needs the new `to_json()`/`meta()`
stored next to its unchanged tensors.
"""
from __future__ import annotations

import json
import os
import re
import sys
from contextlib import contextmanager
from typing import Callable, Iterable

import numpy as np
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers

from femtogpt.config import TOKENIZER_KINDS
from femtogpt.text.printable import printable
from femtogpt.text.rust_calls import TokenizerError, rust_errors

UNK = "<unk>"
RESERVED = "<|reserved_{:03d}|>"
_RESERVED_RE = re.compile(r"<\|reserved_(\d{3,})\|>\Z")
# the reference's 100: \t \n \v \f \r and ' '..'~', in code-point order so ids never move
ASCII_CHARS = "\t\n\x0b\x0c\r" + "".join(map(chr, range(32, 127)))
CHUNK_CHARS = 1 << 20                      # encode and train in ~1M-character pieces

Warn = Callable[[str], None]


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
        if kind not in TOKENIZER_KINDS:
            raise TokenizerError(f"unknown tokenizer kind {printable(repr(kind), 40)} (expected one of "
                                 f"{', '.join(TOKENIZER_KINDS)})")
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
        with rust_errors("the tokenizer cannot encode the text"):
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
                with rust_errors("the tokenizer cannot encode the text"):
                    encoded = batch(part, add_special_tokens=False)
                out += [np.asarray(e.ids, dtype=id_dtype(self.vocab_size)) for e in encoded]
                done += sum(map(len, part))
                if callback:
                    callback(done, len(text))
        return np.concatenate(out) if out else np.zeros(0, id_dtype(self.vocab_size))

    def decode(self, ids) -> str:
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise TokenizerError(f"token id {bad[0]} is outside the vocabulary (0..{self.vocab_size - 1})")
        with rust_errors("the tokenizer cannot decode the ids"):
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
    def from_json(cls, json_text: str, meta: dict, vocab_size: int | None = None) -> "TextTokenizer":
        """Rebuild from a model file's `to_json()` and `meta()`: the same ids as when it was saved.
        vocab_size: the model's; the tokenizer must have exactly that many tokens."""
        with rust_errors("the stored tokenizer JSON cannot be read"):
            hf = Tokenizer.from_str(json_text)
            meta = meta or {}
            case_insensitive = meta.get("case_insensitive", None)
            if case_insensitive is None:
                case_insensitive = _has_lowercase(hf)
            if not isinstance(case_insensitive, bool):
                raise TokenizerError(f"the stored tokenizer's case_insensitive is {case_insensitive!r}, "
                                     "expected true or false")
            tok = cls(hf, meta.get("kind", "bpe"), case_insensitive)
        if meta.get("vocab_size") not in (None, tok.vocab_size):
            raise TokenizerError(f"the stored tokenizer has {tok.vocab_size} tokens but its settings say "
                                 f"{printable(meta['vocab_size'], 40)}")
        if vocab_size is not None and tok.vocab_size != vocab_size:
            raise TokenizerError(f"the stored tokenizer has {tok.vocab_size} tokens but the model's vocab_size "
                                 f"is {vocab_size}: they must be equal")
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
                # a plain token is matched after normalization, so a case-insensitive model finds it
                # in "Hello" as in "hello"; a special one only ever enters by id
                entry.update(content=new, special=bool(special), normalized=not special)
        with rust_errors("cannot replace the reserved token"):
            hf = Tokenizer.from_str(json.dumps(spec))
        return TextTokenizer(hf, self.kind, self.case_insensitive)


# normalizer and pre-tokenizer settings, shared by every way of building one ------------------------


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


def _byte_level(hf: Tokenizer, case_insensitive: bool) -> Tokenizer:
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)   # True breaks the round trip
    hf.decoder = decoders.ByteLevel()
    _lowercase_if(hf, case_insensitive)
    return hf


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

