"""femtogpt.text (tokenizer, build, tokenizer_files, corpus, bpe, token_cache): every kind round-trips, ids are deterministic, <unk> and reserved tokens behave,
train_bpe ends on any corpus, and the token cache is exact and reused."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from tokenizers import pre_tokenizers

from femtogpt.config import TOKENIZER_KINDS
from femtogpt.text import tokenizer as T
from femtogpt.text.bpe import train_bpe
from femtogpt.text.build import build_tokenizer
from femtogpt.text.corpus import read_text
from femtogpt.text.token_cache import encode_file_cached
from femtogpt.text.tokenizer import TextTokenizer, TokenizerError
from femtogpt.text.tokenizer_files import default_tokenizer_json, load_tokenizer_file

ROOT = Path(__file__).resolve().parents[1]
ASCII_TEXT = "Hello, World!\n\tfn main() { let x = 42; }\r\n  trailing  \x0b\x0c~"
UNICODE_TEXT = "naïve café, 漢字 and emoji 😀🎉; Ωμέγα\u0301\n"
BINARY_TEXT = bytes(range(256)).decode("latin-1") + "\x00\x00\ufffd\U0010ffff"


def make_corpus(n_chars, seed=0):
    """Seeded pseudo-prose: 5,000 syllable words with Zipf frequencies, lines of ~12 words."""
    rng = np.random.default_rng(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "de", "gu", "an", "el", "or", "is", "th", "ing"]
    words = ["".join(rng.choice(syllables, n)) for n in rng.integers(1, 5, 5000)]
    freq = 1.0 / np.arange(1, len(words) + 1)
    picks = rng.choice(len(words), size=n_chars // 6 + 1, p=freq / freq.sum())
    seps = np.where(rng.random(len(picks)) < 0.08, ".\n", " ")
    text = "".join(w + s for w, s in zip(np.array(words, dtype=object)[picks], seps))
    return text[:n_chars]


@pytest.fixture
def char_data(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("aaab bc\n" + UNICODE_TEXT, encoding="utf-8")
    return path


def all_kinds(char_data):
    return {"ascii": build_tokenizer("ascii"), "ascii-ci": build_tokenizer("ascii", case_insensitive=True),
            "char": build_tokenizer("char", char_data), "byte": build_tokenizer("byte"),
            "bpe": build_tokenizer("bpe"), "bpe-reserved": build_tokenizer("bpe", reserve_tokens=3)}


def representable(tok, text):
    return tok.count_unknown(text) == 0 and not tok.case_insensitive


def test_round_trip_every_kind(char_data):
    kinds = all_kinds(char_data)
    for name, tok in kinds.items():
        for text in (ASCII_TEXT, UNICODE_TEXT, BINARY_TEXT):
            ids = tok.encode(text)
            assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < tok.vocab_size
            if representable(tok, text):
                assert tok.decode(ids) == text, (name, text)
            elif tok.case_insensitive and tok.count_unknown(text) == 0:
                assert tok.decode(ids) == text.lower(), name
    # what each kind must represent: ascii its 100 characters, byte and byte-level BPE everything
    assert representable(kinds["ascii"], ASCII_TEXT) and representable(kinds["char"], UNICODE_TEXT)
    for name in ("byte", "bpe", "bpe-reserved"):
        assert kinds[name].unk_id is None
        assert all(representable(kinds[name], t) for t in (ASCII_TEXT, UNICODE_TEXT, BINARY_TEXT))


def test_char_round_trips_its_own_unicode_data(char_data):
    tok = build_tokenizer("char", char_data)
    text = char_data.read_text(encoding="utf-8")
    assert tok.count_unknown(text) == 0 and tok.decode(tok.encode(text)) == text


def test_ascii_vocabulary_is_the_reference_one_in_code_point_order():
    tok = build_tokenizer("ascii")
    assert tok.vocab_size == 101 and tok.unk_id == 0
    assert [tok.token_str(i) for i in range(1, 7)] == ["\t", "\n", "\x0b", "\x0c", "\r", " "]
    assert tok.token_str(100) == "~"
    ci = build_tokenizer("ascii", case_insensitive=True)
    assert ci.vocab_size == 75
    assert list(ci.encode("HeLLo")) == list(ci.encode("hello"))
    assert ci.decode(ci.encode("HeLLo")) == "hello"
    assert tok.summary() == "ascii, 101 tokens, case-sensitive"


def test_unk_literal_is_text_and_unknown_characters_map_to_unk(tmp_path):
    data = tmp_path / "d.txt"
    data.write_text("a b <unk> <x>", encoding="utf-8")
    for tok in (build_tokenizer("ascii"), build_tokenizer("char", data)):
        ids = tok.encode("a<unk>b")                     # the reference turned this into a mess of unk
        assert len(ids) == 7 and tok.unk_id not in ids and tok.decode(ids) == "a<unk>b"
        ids = tok.encode("a\u2603b")                    # a snowman is in neither vocabulary
        assert list(ids).count(tok.unk_id) == 1 and tok.decode(ids) == "a<unk>b"
        assert tok.count_unknown("a\u2603b\u2603\u2603") == 3       # one <unk> per character
    # data without those characters: a literal "<unk>" is five unknown characters, never one token
    data.write_text("abc", encoding="utf-8")
    tok = build_tokenizer("char", data)
    assert list(tok.encode("<unk>")) == [tok.unk_id] * 5


def test_char_order_is_frequency_then_code_point_and_max_vocab_caps(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("ccc bb aa d", encoding="utf-8")     # c:3, ' ':3, b:2, a:2, d:1
    tok = build_tokenizer("char", path)
    assert [tok.token_str(i) for i in range(tok.vocab_size)] == ["<unk>", " ", "c", "a", "b", "d"]
    capped = build_tokenizer("char", path, max_vocab=4)
    assert capped.vocab_size == 4 and capped.count_unknown("bd") == 2
    assert capped.notes and "--max-vocab 4" in capped.notes[0]
    ci = build_tokenizer("char", path, case_insensitive=True)
    path.write_text("CCC bb AA d", encoding="utf-8")
    assert build_tokenizer("char", path, case_insensitive=True).to_json() == ci.to_json()
    with pytest.raises(TokenizerError, match="--tokenizer-data"):
        build_tokenizer("char")


def test_char_from_a_directory(tmp_path):
    (tmp_path / "b.txt").write_text("bbb", encoding="utf-8")
    (tmp_path / "a.txt").write_text("aa", encoding="utf-8")
    (tmp_path / ".hidden").write_text("zzzzzz", encoding="utf-8")
    assert read_text(tmp_path) == "aa\nbbb"             # sorted, a newline between files
    tok = build_tokenizer("char", tmp_path)
    assert [tok.token_str(i) for i in range(tok.vocab_size)] == ["<unk>", "b", "a", "\n"]


def test_byte_ids_are_the_utf8_bytes():
    tok = build_tokenizer("byte")
    assert tok.vocab_size == 256
    for text in (ASCII_TEXT, UNICODE_TEXT, BINARY_TEXT):
        assert list(tok.encode(text)) == list(text.encode("utf-8"))
    assert tok.token_bytes(0xE6) == b"\xe6" and tok.token_str(0xE6) == "\\xe6"
    assert set(T.BYTE_TO_CHAR.values()) == set(pre_tokenizers.ByteLevel.alphabet())


def test_reserved_tokens_are_appended_never_encoded_and_replaceable():
    tok = build_tokenizer("ascii", reserve_tokens=3)
    assert tok.vocab_size == 104 and tok.reserved == ["<|reserved_000|>", "<|reserved_001|>", "<|reserved_002|>"]
    assert [tok.token_str(i) for i in (101, 103)] == ["<|reserved_000|>", "<|reserved_002|>"]
    text = "x<|reserved_001|>y"
    ids = tok.encode(text)
    assert ids.max() < 101 and tok.decode(ids) == text  # spelled as characters, never the special id
    assert tok.decode([101]) == "<|reserved_000|>"
    # filling a reserved slot keeps every id and V: a model's tensors need no change
    new = tok.replace_reserved("<|reserved_001|>", "<|endoftext|>", special=True)
    assert new.vocab_size == tok.vocab_size and new.reserved == ["<|reserved_000|>", "<|reserved_002|>"]
    assert new.decode([102]) == "<|endoftext|>" and 102 not in new.encode("a<|endoftext|>")
    assert list(new.encode(ASCII_TEXT)) == list(tok.encode(ASCII_TEXT))
    word = build_tokenizer("bpe", reserve_tokens=2).replace_reserved("<|reserved_000|>", " hello")
    hid = word.hf.token_to_id(" hello")
    assert hid == 768 and hid in word.encode("say hello") and word.decode(word.encode("say hello")) == "say hello"
    again = TextTokenizer.from_json(new.to_json(), new.meta())
    assert list(again.encode(text)) == list(new.encode(text)) and again.meta()["reserve_tokens"] == 2


def test_reserve_is_not_doubled_for_a_file_that_has_them(tmp_path):
    tok, _ = train_bpe("abc abc abd " * 50, 300, reserve_tokens=4)
    path = tmp_path / "t.json"
    path.write_text(tok.to_json(), encoding="utf-8")
    again = build_tokenizer("bpe", path, reserve_tokens=4)
    assert again.vocab_size == tok.vocab_size and len(again.reserved) == 4
    more = build_tokenizer("bpe", path, reserve_tokens=6)
    assert more.vocab_size == tok.vocab_size + 2 and more.reserved[-1] == "<|reserved_005|>"


def test_json_round_trip_gives_identical_ids(char_data):
    for name, tok in all_kinds(char_data).items():
        meta = tok.meta()
        assert all(isinstance(v, (str, int, bool)) for v in meta.values()) and meta["kind"] in TOKENIZER_KINDS
        back = TextTokenizer.from_json(tok.to_json(), meta)
        assert back.to_json() == tok.to_json() == tok.hf.to_str()
        assert back.vocab_size == tok.vocab_size and back.summary() == tok.summary()
        for text in (ASCII_TEXT, UNICODE_TEXT, "<|reserved_000|>"):
            assert list(back.encode(text)) == list(tok.encode(text)), name
    with pytest.raises(TokenizerError, match="settings say"):
        TextTokenizer.from_json(build_tokenizer("ascii").to_json(), {"kind": "ascii", "vocab_size": 7})
    with pytest.raises(TokenizerError):
        TextTokenizer.from_json("{not json", {"kind": "ascii"})


DETERMINISM_SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    from femtogpt.text.bpe import train_bpe
    from femtogpt.text.build import build_tokenizer
    from femtogpt.text.tokenizer_files import from_token_list
    text = "The quick brown fox, naïve café 漢字 😀 <unk>\\n\\tjumps over 12345 lazy dogs." * 3
    corpus = " ".join(f"w{i % 97} x{i % 13}y{i % 7}" for i in range(3000))
    toks = {k: build_tokenizer(k, sys.argv[1] if k == "char" else None, reserve_tokens=2)
            for k in ("ascii", "char", "byte", "bpe")}
    toks["ascii-ci"] = build_tokenizer("ascii", case_insensitive=True)
    toks["trained"] = train_bpe(corpus, 400, reserve_tokens=1)[0]
    toks["list"] = from_token_list(["fox", "o", "x", "f", "the ", "e"])
    out = {k: [hashlib.sha256(t.to_json().encode()).hexdigest(), t.encode(text).tolist()]
           for k, t in toks.items()}
    print(json.dumps(out, sort_keys=True))
""")


def test_ids_are_deterministic_across_processes(char_data):
    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        res = subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT, str(char_data)], env=env,
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(res.stdout))
    assert runs[0] == runs[1]
    assert set(runs[0]) == {"ascii", "char", "byte", "bpe", "ascii-ci", "trained", "list"}
    ascii_ids = runs[0]["ascii"][1]
    assert ascii_ids[:3] == [T.ASCII_CHARS.index(c) + 1 for c in "The"]   # fixed, not a permutation


def test_train_bpe_vocab_size_and_what_small_corpora_allow():
    corpus = make_corpus(200_000)
    tok, note = train_bpe(corpus, 600)
    assert tok.vocab_size == 600 and note == "" and tok.unk_id is None
    assert tok.decode(tok.encode(corpus)) == corpus and len(tok.encode(corpus)) < len(corpus) / 3
    one, note = train_bpe("a", 512)
    assert one.vocab_size == 256 and "only 256 tokens" in note and "512" in note
    rep, note = train_bpe("ab" * 5000, 1000)
    assert 256 < rep.vocab_size < 1000 and f"only {rep.vocab_size} tokens" in note
    with pytest.raises(TokenizerError, match="empty"):
        train_bpe("", 300)
    with pytest.raises(TokenizerError, match="at least 256"):
        train_bpe("abc", 100)
    ci, _ = train_bpe("Hello HELLO hello " * 100, 300, case_insensitive=True, reserve_tokens=2)
    assert ci.case_insensitive and list(ci.encode("HELLO")) == list(ci.encode("hello"))
    assert ci.vocab_size == len(ci.hf.get_vocab()) and ci.reserved == ["<|reserved_000|>", "<|reserved_001|>"]


def test_train_bpe_reads_paths_and_rejects_bad_ones(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(TokenizerError, match="empty"):
        train_bpe(tmp_path / "empty.txt", 300)
    with pytest.raises(TokenizerError, match="no such file"):
        train_bpe(tmp_path / "missing.txt", 300)
    (tmp_path / "a.txt").write_text(make_corpus(20_000), encoding="utf-8")
    tok, note = train_bpe([tmp_path / "a.txt"], 300)
    assert tok.vocab_size == 300 and note == ""


def test_token_lists_and_fork_json(tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps(["abc", "ab", "a", "b", "c", ";\n", "<unk>", "ab"]))
    tok = load_tokenizer_file(path)
    assert tok.kind == "bpe" and tok.vocab_size == 7 and tok.unk_id == 0
    assert tok.token_str(1) == "abc" and tok.token_str(6) == ";\n"
    assert list(tok.encode("abcab;\n")) == [1, 2, 6]            # the fewest tokens
    assert tok.decode(tok.encode("abzzc")) == "ab<unk>c" and tok.count_unknown("abzzc") == 1
    assert tok.count_unknown("<unk>") == 1                        # no '<' in the list: one unknown run
    assert "token list" in tok.summary()
    fork = tmp_path / "fork.json"
    fork.write_text(json.dumps({"unit": "Char", "case_sensitive": False, "unk": 1,
                                "tokens": {"0": [97], "1": list(b"<unk>"), "2": [98], "3": list(b"ab")}}))
    ftok = load_tokenizer_file(fork)
    assert ftok.unk_id == 1 and ftok.case_insensitive and list(ftok.encode("ABb")) == [3, 2]
    for bad, msg in ((["a", 3], "only strings"), (["a", ""], "empty string"), ({"x": 1}, "not a tokenizer")):
        path.write_text(json.dumps(bad))
        with pytest.raises(TokenizerError, match=msg):
            load_tokenizer_file(path)
    path.write_text("{oops")
    with pytest.raises(TokenizerError, match="not JSON"):
        load_tokenizer_file(path)
    with pytest.raises(TokenizerError, match="no such tokenizer file"):
        load_tokenizer_file(tmp_path / "nope.json")


def test_a_foreign_tokenizer_json_encodes_whole_texts(tmp_path):
    hf = build_tokenizer("bpe").hf
    hf.enable_truncation(8)
    hf.add_special_tokens(["<|endoftext|>"])
    path = tmp_path / "hf.json"
    path.write_text(hf.to_str(), encoding="utf-8")
    tok = load_tokenizer_file(path)
    text = "hello world, " * 10 + "<|endoftext|>"
    assert tok.decode(tok.encode(text)) == text and len(tok.encode(text)) > 8
    assert tok.hf.token_to_id("<|endoftext|>") not in tok.encode(text)    # special: only by id


def test_shipped_tokenizer_is_package_data_and_matches_the_top_level_copy():
    packaged = ROOT / "femtogpt" / "data" / "tokenizer.json"
    assert packaged.read_bytes() == (ROOT / "tokenizer.json").read_bytes()
    assert default_tokenizer_json() == packaged.read_text(encoding="utf-8")
    tok = build_tokenizer("bpe")
    assert tok.summary() == "bpe, 768 tokens, case-sensitive" and tok.byte_level
    assert 'femtogpt = ["data/*.json"]' in (ROOT / "pyproject.toml").read_text()


def test_read_text_errors_and_invalid_utf8(tmp_path):
    with pytest.raises(TokenizerError, match="no such file"):
        read_text(tmp_path / "missing")
    (tmp_path / "e.txt").write_bytes(b"")
    with pytest.raises(TokenizerError, match="empty"):
        read_text(tmp_path / "e.txt")
    (tmp_path / "d").mkdir()
    with pytest.raises(TokenizerError, match="no text files"):
        read_text(tmp_path / "d")
    (tmp_path / "bad.txt").write_bytes(b"ok \xff\xfe end\r\n")
    notes = []
    assert read_text(tmp_path / "bad.txt", notes.append) == "ok \ufffd\ufffd end\r\n"   # \r\n kept
    assert len(notes) == 1 and "bad.txt at byte 3" in notes[0] and "not valid UTF-8" in notes[0]


def test_split_for_encoding_matches_one_big_encode():
    rng = np.random.default_rng(0)
    lines = ["hello world\n", "  indented\n", "\n\n", "x = 1;\n", "ünï 漢字\n", "tab\there\n", "a", " "]
    text = "".join(lines[i] for i in rng.integers(0, len(lines), 20000))
    assert "".join(T.split_for_encoding(text, 1000)) == text
    for tok in (build_tokenizer("bpe"), build_tokenizer("byte"), build_tokenizer("ascii")):
        assert list(tok.encode_large(text, chunk_chars=1000)) == list(tok.encode(text))


def test_encode_file_cached_is_exact_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("FEMTOGPT_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "data.txt"
    data.write_text(ASCII_TEXT * 200 + "\u2603", encoding="utf-8")
    tok = build_tokenizer("ascii")
    seen, warnings = [], []
    ids = encode_file_cached(tok, data, progress=lambda d, t: seen.append((d, t)), warn=warnings.append)
    assert ids.dtype == np.uint16 and list(ids) == list(tok.encode(read_text(data)))
    assert seen[-1][0] == seen[-1][1] and len(list((tmp_path / "cache").glob("*.ids.npz"))) == 1
    assert len(warnings) == 1 and "1 <unk>" in warnings[0]
    monkeypatch.setattr(TextTokenizer, "encode_large", lambda *a, **k: pytest.fail("cache not used"))
    again = encode_file_cached(tok, data, warn=warnings.append)
    assert again.dtype == np.uint16 and np.array_equal(again, ids)
    # a directory dataset, and another tokenizer, get their own entries
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "x.txt").write_text("abc", encoding="utf-8")
    monkeypatch.undo()
    monkeypatch.setenv("FEMTOGPT_CACHE_DIR", str(tmp_path / "cache"))
    assert list(encode_file_cached(build_tokenizer("byte"), tmp_path / "dir")) == [97, 98, 99]
    assert len(list((tmp_path / "cache").glob("*.ids.npz"))) == 2
    assert T.id_dtype(65536) == np.uint16 and T.id_dtype(65537) == np.uint32


def test_errors_name_the_flag():
    with pytest.raises(TokenizerError, match="--tokenizer"):
        build_tokenizer("sentencepiece")
    with pytest.raises(TokenizerError, match="--reserve-tokens"):
        build_tokenizer("ascii", reserve_tokens=-1)
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        build_tokenizer("ascii").decode([101])
