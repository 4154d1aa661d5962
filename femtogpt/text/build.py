"""`build_tokenizer`: one tokenizer for each kind of `init --tokenizer` (ascii, char, byte, bpe), and the
reserved placeholder tokens every kind can get. Not here: the tokenizer itself (text/tokenizer.py), reading
tokenizer files (text/tokenizer_files.py), BPE training (text/bpe.py)."""
from __future__ import annotations

from collections import Counter

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

from femtogpt.text.corpus import read_text
from femtogpt.config import TOKENIZER_KINDS
from femtogpt.text.tokenizer import (ASCII_CHARS, BYTE_TO_CHAR, RESERVED, UNK, _RESERVED_RE, TextTokenizer,
                                     TokenizerError, Warn, _byte_level, _lowercase_if)
from femtogpt.text.tokenizer_files import default_tokenizer_json, load_tokenizer_file, parse_tokenizer_json


def _char_level(chars: list[str], kind: str, case_insensitive: bool, notes=()) -> TextTokenizer:
    # a BPE with no merges and no pre-tokenizer: each character is one token, anything else <unk>;
    # twice as fast as WordLevel + a per-character Split, and "<unk>" can never be formed from text
    vocab = {UNK: 0, **{c: i + 1 for i, c in enumerate(chars)}}
    hf = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK, fuse_unk=False))
    hf.decoder = decoders.Fuse()           # concatenate; the default decoder joins with spaces
    _lowercase_if(hf, case_insensitive)
    return TextTokenizer(hf, kind, case_insensitive, notes)


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
        raise TokenizerError(f"--tokenizer: unknown kind {kind!r} (expected one of {', '.join(TOKENIZER_KINDS)})")
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
