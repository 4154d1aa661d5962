"""`train_bpe`: byte-level BPE with Hugging Face's trainer, for `train-bpe`. Not here: loading a trained
tokenizer.json (text/tokenizer_files.py)."""
from __future__ import annotations

import os

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from femtogpt.text.build import _with_reserved
from femtogpt.text.corpus import read_text
from femtogpt.text.tokenizer import TextTokenizer, TokenizerError, Warn, _byte_level, split_for_encoding


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
