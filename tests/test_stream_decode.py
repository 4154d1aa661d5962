"""text/stream.py: the streamed text of `infer` equals a full decode, for every tokenizer kind, with
multi-byte UTF-8 characters split across byte tokens, and each token decodes only a short window."""
import random

import pytest

from femtogpt.text.build import build_tokenizer
from femtogpt.text.stream import StreamDecoder
from femtogpt.text.tokenizer_files import from_token_list

TEXT = "héllo wörld: naïve café, 日本語のテキスト, emoji 🎉🧪 and ascii.\n\tthe end ¿sí?\n"


def tokenizers(tmp_path):
    (tmp_path / "d.txt").write_text(TEXT, encoding="utf-8")
    return {
        "ascii": build_tokenizer("ascii"),
        "char": build_tokenizer("char", tmp_path / "d.txt", reserve_tokens=2),
        "byte": build_tokenizer("byte"),
        "bpe": build_tokenizer("bpe"),
        "token list": from_token_list(["hé", "llo", " ", "w", "ö", "rld", "日本", "語"]),
    }


def stream(tok, ids):
    decoder = StreamDecoder(tok)
    pieces = [decoder.push(i) for i in ids]
    return pieces, decoder.flush()


@pytest.mark.parametrize("kind", ["ascii", "char", "byte", "bpe", "token list"])
def test_streamed_text_equals_a_full_decode(tmp_path, kind):
    tok = tokenizers(tmp_path)[kind]
    ids = [int(i) for i in tok.encode(TEXT)]
    pieces, rest = stream(tok, ids)
    assert "".join(pieces) + rest == tok.decode(ids)
    for length in range(len(ids)):                       # every prefix: what a shorter --count prints
        pieces, rest = stream(tok, ids[:length])
        assert "".join(pieces) + rest == tok.decode(ids[:length])
    rng = random.Random(kind)                            # any ids a model might sample, reserved ones too
    for _ in range(300):
        ids = [rng.randrange(tok.vocab_size) for _ in range(rng.randrange(60))]
        pieces, rest = stream(tok, ids)
        assert "".join(pieces) + rest == tok.decode(ids), ids


def test_a_character_split_across_byte_tokens_waits_for_its_last_byte():
    tok = build_tokenizer("byte")
    ids = [int(i) for i in tok.encode("a🎉b")]         # 1 + 4 + 1 byte tokens
    assert len(ids) == 6
    pieces, rest = stream(tok, ids)
    assert pieces == ["a", "", "", "", "🎉", "b"] and rest == ""
    pieces, rest = stream(tok, ids[:3])                  # cut inside the emoji: a full decode shows U+FFFD
    assert pieces == ["a", "", ""] and rest == tok.decode(ids[:3])[1:] and rest.endswith("\ufffd")


def test_each_token_decodes_a_short_window():
    tok = build_tokenizer("byte")
    windows = []

    class Recording:
        def decode(self, ids):
            windows.append(len(ids))
            return tok.decode(ids)

    ids = [int(i) for i in tok.encode(TEXT * 20)]
    decoder = StreamDecoder(Recording())
    text = "".join(decoder.push(i) for i in ids) + decoder.flush()
    assert text == tok.decode(ids) and len(ids) > 1000
    assert max(windows) <= 8                             # a 4-byte character and the text before it
