"""Reading tokenizer files: a Hugging Face tokenizer.json (ours from train-bpe, or any), the reference's
JSON array of token strings, the fork's own tokenizer JSON, and the shipped default. Not here: building
a tokenizer from a kind (text/build.py)."""
from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers

from femtogpt.text.printable import printable
from femtogpt.text.rust_calls import rust_errors
from femtogpt.text.tokenizer import UNK, TextTokenizer, TokenizerError, _has_lowercase, _lowercase_if

_UNK_SCORE = -1e9                          # token lists: "<unk>" is never chosen to spell real text


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
    """A tokenizer from the text of a tokenizer JSON file (see load_tokenizer_file); `name` is the
    file's, for the one-line TokenizerError any defect gives."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TokenizerError(f"{name}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise TokenizerError(f"{name}: not a tokenizer JSON (nested too deeply)") from None
    if isinstance(data, list):
        return from_token_list(data, case_insensitive, name)
    if isinstance(data, dict) and "model" in data:
        with rust_errors(f"{name}: not a valid Hugging Face tokenizer.json"):
            hf = Tokenizer.from_str(text)
            hf.no_truncation()             # a foreign file may truncate or pad: we encode whole texts
            hf.no_padding()
            _lowercase_if(hf, case_insensitive)
            return TextTokenizer(hf, "bpe", _has_lowercase(hf))
    if isinstance(data, dict) and {"unit", "tokens", "unk"} <= set(data):
        try:
            unk = data["unk"]
            if type(unk) is not int or not all(type(v) is list for v in data["tokens"].values()):
                raise TypeError            # bytes(an int) would allocate that many bytes
            tokens = {int(k): bytes(v) for k, v in data["tokens"].items()}
        except (TypeError, ValueError, AttributeError):
            raise TokenizerError(f"{name}: the fork tokenizer's `tokens` must map ids to byte lists, and "
                                 "`unk` must be an id") from None
        if data["unit"] != "Char":
            raise TokenizerError(f"{name}: fork tokenizers with unit {printable(repr(data['unit']), 40)} are "
                                 "not supported")
        case_sensitive = data.get("case_sensitive", True)
        if type(case_sensitive) is not bool:
            raise TokenizerError(f"{name}: the fork tokenizer's `case_sensitive` must be true or false")
        return from_fork_tokens(tokens, unk, case_sensitive, name)
    raise TokenizerError(f"{name}: not a tokenizer JSON (expected a Hugging Face tokenizer.json, a JSON "
                         "array of token strings, or a fork tokenizer JSON)")


def _unigram(pieces: list[str], unk_id: int, case_insensitive: bool, name: str) -> TextTokenizer:
    # a Unigram with equal scores spells text with the fewest tokens (Viterbi, deterministic);
    # unknown characters become one <unk> per run
    if len(set(pieces)) != len(pieces):
        seen = set()
        dup = next(p for p in pieces if p in seen or seen.add(p))
        raise TokenizerError(f"{name}: token {printable(repr(dup), 40)} appears twice")
    vocab = [(p, _UNK_SCORE if i == unk_id else -1.0) for i, p in enumerate(pieces)]
    with rust_errors(f"{name}: cannot build a tokenizer from its tokens"):
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
        with rust_errors(f"{name}: cannot lowercase its tokens"):
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
