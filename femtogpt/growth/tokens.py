"""Growing a model's vocabulary: `add_tokens` and `replace_reserved`.

add_tokens (reference §9.1, TODO item 1, the fork's "difficult approach", never implemented there):
the new tokens get the ids V..V+k-1, as Hugging Face added tokens (matched in text before the model's
own pieces, so text without them encodes to the same ids as before); token_embedding (V, E) gains k
rows, head_map_weights (E, V) k columns and head_map_bias (V,) k entries; every other tensor, the old
rows and columns, and their AdamW moments are kept bitwise; the new rows' moments start at zero and
the optimizer step is kept (no warm-up restart). A new row is the mean of the rows of the pieces the
old tokenizer spells the token with ("mean-of-pieces"), or of all rows ("mean").

replace_reserved (the fork's "easy approach", reference §4.3): a `--reserve-tokens` placeholder
becomes a real token with the same id; no tensor changes.

What stays exactly as it was: on any text encoded the old way, every hidden state, and so the old
vocabulary's logits as a function (old head columns and biases are unchanged). The bits the model's
head product gives for an old column can still move by a rounding step, because BLAS picks its
kernels by the width of the whole matrix (tests/test_add_tokens.py measures both).
Not here: the commands (cli/growth.py), the tokenizer itself (text/tokenizer.py).
"""
from dataclasses import dataclass, replace

import numpy as np
from tokenizers import AddedToken, Tokenizer

from femtogpt.engine.params import Parameters
from femtogpt.growth.surgery import grown_checkpoint
from femtogpt.io.logs import ADD_TOKENS, REPLACE_RESERVED, new_log
from femtogpt.text.printable import quoted
from femtogpt.text.rust_calls import rust_errors
from femtogpt.text.tokenizer import TextTokenizer

INITS = ("mean-of-pieces", "mean")
# mean-of-pieces by measurement (experiments/add_tokens_init.py, 3 seeds, two toy datasets): the loss right
# after adding is far lower (2.34 vs 3.68 on simple_dummy's ";\n"), and after 200 more steps it is ahead on
# one dataset and slightly behind on the other (nats per character 1.523 vs 1.559; 1.393 vs 1.373)
DEFAULT_INIT = "mean-of-pieces"
ROWS = "token_embedding"                       # (V, E): one row per token
COLUMNS = ("head_map_weights", "head_map_bias")  # (E, V) and (V,): one column (entry) per token


class VocabularyError(ValueError):
    """A token that cannot be added (or a reserved id that cannot be filled): one line for the user."""


def _show(token):
    text = quoted(token)   # JSON-quoted: spaces and newlines visible, controls escaped
    return text if len(text) <= 60 else text[:57] + "..."


def _known_bytes(tok):
    """{bytes: id} of every token of `tok` (the first id wins): what a new token may not repeat."""
    known = {}
    for i in range(tok.vocab_size):
        known.setdefault(tok.token_bytes(i), i)
    return known


def check_new_token(tok, token, known=None, matched_in_text=True):
    """Refuse (VocabularyError) a token that is empty, not a string, already in the vocabulary, or,
    when it is to be matched in text, that the tokenizer's normalizer changes (a case-insensitive
    tokenizer lowercases text before it matches an added token: 'Hello' could never match)."""
    if not isinstance(token, str) or token == "":
        raise VocabularyError("an empty token cannot be added")
    known = _known_bytes(tok) if known is None else known
    if token.encode("utf-8") in known:
        raise VocabularyError(f"token {_show(token)} is already in the vocabulary (id {known[token.encode('utf-8')]})")
    clash = tok.hf.token_to_id(token)   # a byte-level model names byte 0xe9 "é": that name is taken
    if clash is not None:
        raise VocabularyError(f"token {_show(token)} cannot be added: the tokenizer already uses that string as "
                              f"the name of id {clash} ({_show(tok.hf.id_to_token(clash))})")
    if matched_in_text and tok.hf.normalizer is not None:
        with rust_errors(f"the tokenizer cannot normalize {_show(token)}"):
            normal = tok.hf.normalizer.normalize_str(token)
        if normal != token:
            raise VocabularyError(f"token {_show(token)}: this tokenizer normalizes text before matching "
                                  f"(e.g. it is case-insensitive), so give it as {_show(normal)}")


def _check_round_trip(tok, token, token_id):
    """The new tokenizer must encode the token's text to its id and decode the id to the text. The
    tokenizers library's ByteLevel decoder maps an added token made only of GPT-2 byte-alphabet
    characters through that alphabet, so e.g. 'héllo' would decode as 'h\\xe9llo': refused."""
    ids, text = tok.encode(token).tolist(), tok.decode([token_id])
    if ids != [token_id] or text != token:
        raise VocabularyError(f"token {_show(token)}: this {tok.kind} tokenizer would encode it as {ids} and "
                              f"decode it as {_show(text)} (byte-level tokenizers cannot decode an added "
                              f"token of only GPT-2 byte-alphabet characters; one with a space works)")


def with_added_tokens(tok, tokens):
    """A new TextTokenizer: `tok` plus `tokens` (non-special, matched in text) at ids V, V+1, ...;
    `tok` is not changed. Refuses (VocabularyError) duplicates and every case of check_new_token."""
    tokens = list(tokens)
    if not tokens:
        raise VocabularyError("no token to add")
    seen = set()
    for t in tokens:
        if t in seen:
            raise VocabularyError(f"token {_show(t)} is given twice")
        seen.add(t)
    known = _known_bytes(tok)
    for t in tokens:
        check_new_token(tok, t, known)
    with rust_errors("the tokenizer cannot take the new tokens"):
        hf = Tokenizer.from_str(tok.to_json())  # a copy: the input keeps its vocabulary
        hf.add_tokens([AddedToken(t, special=False, normalized=True) for t in tokens])
    new = TextTokenizer(hf, tok.kind, tok.case_insensitive)
    V = tok.vocab_size
    ids = [hf.token_to_id(t) for t in tokens]
    if ids != list(range(V, V + len(tokens))) or new.vocab_size != V + len(tokens):
        raise VocabularyError(f"the tokenizer gave the new tokens ids {ids}, not {V}..{V + len(tokens) - 1}")
    for t, i in zip(tokens, ids):
        _check_round_trip(new, t, i)
    return new


def new_rows(old_tok, named, tokens, init):
    """(rows (k, E), columns (E, k), biases (k,)) for the new tokens, from the old model's tensors
    `named` (reference name -> array). mean-of-pieces: the mean over the ids the old tokenizer spells
    each token with (repeats counted); mean: over every token. Means are taken in float64."""
    emb, w, b = named[ROWS], named[COLUMNS[0]], named[COLUMNS[1]]
    pick = []
    for t in tokens:
        pieces = old_tok.encode(t) if init == "mean-of-pieces" else np.arange(emb.shape[0])
        pick.append(pieces if len(pieces) else np.arange(emb.shape[0]))
    rows = np.stack([emb[p].mean(axis=0, dtype=np.float64) for p in pick])
    cols = np.stack([w[:, p].mean(axis=1, dtype=np.float64) for p in pick], axis=1)
    bias = np.array([b[p].mean(dtype=np.float64) for p in pick])
    return rows.astype(emb.dtype), cols.astype(w.dtype), bias.astype(b.dtype)


def _grown(name, old, k, fill=None):
    """`old` with k more tokens: rows for token_embedding, columns/entries for the head; the new part
    is `fill` or zeros."""
    if name == ROWS:
        extra = np.zeros((k, old.shape[1]), old.dtype) if fill is None else fill
        return np.concatenate([old, extra], axis=0)
    extra = np.zeros(old.shape[:-1] + (k,), old.dtype) if fill is None else fill
    return np.concatenate([old, extra], axis=-1)


@dataclass
class AddTokensReport:
    tokens: list       # the new tokens, in id order
    first_id: int      # the first new id (the old V)
    pieces: list       # for each new token, the old ids it was spelled with (what mean-of-pieces averaged)
    init: str
    optimizer: str     # "kept" (old moments kept, new rows zero, step kept) or "none"


def add_tokens(checkpoint, tokens, init=DEFAULT_INIT):
    """(new Checkpoint, AddTokensReport): `checkpoint` with `tokens` appended to its vocabulary (see the
    module docstring); the input is not changed. VocabularyError for a token that cannot be added."""
    if init not in INITS:
        raise VocabularyError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    old_tok, old_hp = checkpoint.tokenizer, checkpoint.hp
    tok = with_added_tokens(old_tok, tokens)
    tokens, V = list(tokens), old_hp.vocab_size
    k = len(tokens)
    hp = replace(old_hp, vocab_size=V + k).validate()
    src = checkpoint.model.params.named()
    rows, cols, bias = new_rows(old_tok, src, tokens, init)
    params = Parameters(hp, checkpoint.model.dtype)
    dst = params.named()
    for name, view in src.items():
        if name == ROWS:
            dst[name][...] = _grown(name, view, k, rows)
        elif name in COLUMNS:
            dst[name][...] = _grown(name, view, k, cols if name == COLUMNS[0] else bias)
        else:
            dst[name][...] = view

    grown, how = grown_checkpoint(  # old moments kept bitwise, the new tokens' start at zero
        checkpoint, hp, params,
        lambda moments: {n: _grown(n, m, k) if n == ROWS or n in COLUMNS else m for n, m in moments.items()},
        lambda how: new_log(ADD_TOKENS, tokens=tokens, first_id=V, init=init), tokenizer=tok)
    report = AddTokensReport(tokens=tokens, first_id=V, init=init,
                             pieces=[old_tok.encode(t).tolist() for t in tokens], optimizer=how)
    return grown, report


def replace_reserved(checkpoint, token_id, token, special=False):
    """A Checkpoint whose tokenizer has `token` at `token_id`, which must be a reserved placeholder
    (`--reserve-tokens`); the same model and optimizer objects (no tensor changes), V kept, one
    ReplaceReserved log appended. special=False: matched in text from now on; True: only ever
    enters by id (e.g. "<|endoftext|>"). VocabularyError if the id is not reserved or the token exists."""
    tok = checkpoint.tokenizer
    token_id = int(token_id)
    if not tok.reserved:
        raise VocabularyError("this model's tokenizer has no reserved tokens (init --reserve-tokens N makes some)")
    reserved_ids = [tok.hf.token_to_id(r) for r in tok.reserved]
    if token_id not in reserved_ids:
        what = (f"is {_show(tok.token_str(token_id))}" if 0 <= token_id < tok.vocab_size
                else f"is outside the vocabulary (0..{tok.vocab_size - 1})")
        raise VocabularyError(f"id {token_id} is not a reserved token (it {what}); the reserved ids are "
                              f"{_id_ranges(reserved_ids)}")
    check_new_token(tok, token, matched_in_text=not special)
    was = tok.reserved[reserved_ids.index(token_id)]
    new = tok.replace_reserved(was, token, special)
    if special:
        if new.decode([token_id]) != token:
            raise VocabularyError(f"token {_show(token)}: this tokenizer would decode it as "
                                  f"{_show(new.decode([token_id]))}")
    else:
        _check_round_trip(new, token, token_id)
    log = new_log(REPLACE_RESERVED, token_id=token_id, token=token, reserved=was, special=bool(special))
    return replace(checkpoint, tokenizer=new, logs=list(checkpoint.logs) + [log])


def _id_ranges(ids):
    ids = sorted(ids)
    if len(ids) > 1 and ids == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]}..{ids[-1]}"
    return ", ".join(map(str, ids))
