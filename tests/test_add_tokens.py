"""add-tokens and replace-reserved (growth/tokens.py, issue 17): on text encoded the old way the model
computes the same hidden states and the same old-vocabulary logits; every other tensor and every
untouched moment is kept bitwise; text without the new tokens encodes as before; the file reloads,
trains and shows its new vocabulary; bad input is one line. Also the --input/--output flags of
reset-optimizer and swap-kq with their old spellings as hidden aliases."""
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from femtogpt.config import Hyperparameters
from femtogpt.engine.params import named_views
from femtogpt.growth.tokens import (DEFAULT_INIT, INITS, VocabularyError, add_tokens, replace_reserved,
                                    with_added_tokens)
from femtogpt.io.checkpoint import create, load
from femtogpt.io.model_file import load_model_file
from femtogpt.tasks.toy_data import generate_text
from femtogpt.text.build import build_tokenizer
from femtogpt.text.tokenizer import TextTokenizer
from femtogpt.train.step import sample_batch, train_step
from tests.run_cli import run
from tests.models import train_steps

TEXT = generate_text("simple_dummy", 300, seed=1)   # lines like "gofube;\n": ";\n" is frequent
HELD_OUT = generate_text("simple_dummy", 40, seed=7)
VOCAB = ("token_embedding", "head_map_weights", "head_map_bias")
ROOT = Path(__file__).resolve().parent.parent


def trained(steps=6, seed=0, reserve=2, E=16):
    """An ascii model (with `reserve` reserved tokens) trained a few steps, so moments are nonzero."""
    tok = build_tokenizer("ascii", reserve_tokens=reserve)
    hp = Hyperparameters(vocab_size=tok.vocab_size, num_tokens=8, embedding_degree=E, num_layers=2,
                         num_heads=2, pos_enc="absolute")
    s = create(hp, tok, seed=seed)
    return train_steps(s, TEXT, steps, seed)


@pytest.fixture(scope="module")
def base():
    return trained()


def windows(tok, text, T=8, n=6):
    ids = tok.encode(text)
    return np.stack([ids[i * T:(i + 1) * T] for i in range(n)])


def column_logits(h, w, b):
    """h (N, C) @ w (C, V) + b with every column summed on its own, in an order that does not depend
    on how many columns there are (a BLAS product picks its kernels by the width of the whole matrix)."""
    return (h[:, :, None] * w[None, :, :]).sum(axis=1) + b


# ------------------------------------------------------------------------------------ library

@pytest.mark.parametrize("init", INITS)
def test_old_tokens_compute_exactly_as_before(base, init):
    grown, report = add_tokens(base, [";\n", " hello"], init=init)
    V = base.hp.vocab_size
    assert grown.hp.vocab_size == V + 2 and report.first_id == V and grown.tokenizer.vocab_size == V + 2
    ids = windows(base.tokenizer, HELD_OUT)                  # text encoded the old way
    old, new = base.model.forward_trace(ids), grown.model.forward_trace(ids)
    for field in ("resid", "normed", "attn", "mid", "ffn"):
        assert getattr(old, field).tobytes() == getattr(new, field).tobytes(), field
    h = old.normed[-1].reshape(-1, base.hp.embedding_degree)   # what the head reads
    P, Q = base.model.params.named(), grown.model.params.named()
    before = column_logits(h, P["head_map_weights"], P["head_map_bias"])
    after = column_logits(h, Q["head_map_weights"], Q["head_map_bias"])
    assert after.shape[1] == V + 2 and after[:, :V].tobytes() == before.tobytes()  # the old logits, bitwise
    # the model's own head goes through BLAS, which may round an old column differently at a new width
    model_old, model_new = base.model.logits(ids), grown.model.logits(ids)
    np.testing.assert_allclose(model_new[..., :V], model_old, rtol=0, atol=1e-5)


@pytest.mark.parametrize("init", INITS)
def test_every_other_tensor_and_old_rows_are_kept_and_new_rows_are_means(base, init):
    grown, report = add_tokens(base, [";\n", " hello"], init=init)
    V = base.hp.vocab_size
    P, Q = base.model.params.named(), grown.model.params.named()
    assert set(P) == set(Q)
    for name in P:
        if name not in VOCAB:
            assert P[name].tobytes() == Q[name].tobytes(), name
    assert Q["token_embedding"][:V].tobytes() == P["token_embedding"].tobytes()
    assert Q["head_map_weights"][:, :V].tobytes() == P["head_map_weights"].tobytes()
    assert Q["head_map_bias"][:V].tobytes() == P["head_map_bias"].tobytes()
    assert report.pieces == [base.tokenizer.encode(";\n").tolist(), base.tokenizer.encode(" hello").tolist()]
    for i, pieces in enumerate(report.pieces):
        pick = pieces if init == "mean-of-pieces" else list(range(V))
        want = P["token_embedding"][pick].astype(np.float64).mean(axis=0).astype(np.float32)
        assert Q["token_embedding"][V + i].tobytes() == want.tobytes()
        col = P["head_map_weights"][:, pick].astype(np.float64).mean(axis=1).astype(np.float32)
        assert Q["head_map_weights"][:, V + i].tobytes() == col.tobytes()
        assert Q["head_map_bias"][V + i] == np.float32(P["head_map_bias"][pick].astype(np.float64).mean())
    assert grown.logs[-1]["kind"] == "AddTokens" and grown.logs[-1]["tokens"] == [";\n", " hello"]
    assert grown.logs[-1]["first_id"] == V and grown.logs[-1]["init"] == init
    assert base.hp.vocab_size == V and base.tokenizer.vocab_size == V   # the input is untouched


def test_moments_of_untouched_tensors_and_old_rows_are_kept_new_rows_zero(base):
    grown, report = add_tokens(base, [";\n"])
    V = base.hp.vocab_size
    assert report.optimizer == "kept" and grown.optimizer.step == base.optimizer.step == 6
    assert grown.optimizer.params is grown.model.params
    assert grown.optimizer.config == base.optimizer.config
    for key in ("m", "v"):
        old = named_views(base.hp, getattr(base.optimizer, key))
        new = named_views(grown.hp, getattr(grown.optimizer, key))
        assert set(old) == set(new)
        for name in old:
            if name not in VOCAB:
                assert new[name].tobytes() == old[name].tobytes(), (key, name)
        assert old["token_embedding"].any() and old["head_map_weights"].any()   # trained: a real test
        assert new["token_embedding"][:V].tobytes() == old["token_embedding"].tobytes()
        assert new["head_map_weights"][:, :V].tobytes() == old["head_map_weights"].tobytes()
        assert new["head_map_bias"][:V].tobytes() == old["head_map_bias"].tobytes()
        assert not new["token_embedding"][V:].any() and not new["head_map_weights"][:, V:].any()
        assert not new["head_map_bias"][V:].any()
    fresh = create(base.hp, base.tokenizer, seed=3)          # no optimizer stored: none after
    grown, report = add_tokens(fresh, ["ab"])
    assert grown.optimizer is None and report.optimizer == "none"


@pytest.mark.parametrize("kind", ["ascii", "byte", "bpe"])
def test_text_without_the_new_tokens_encodes_as_before(kind):
    tok = build_tokenizer(kind, reserve_tokens=1)
    new = with_added_tokens(tok, [" hello", "xyz;\n", "<b>"])
    V = tok.vocab_size
    assert [new.hf.token_to_id(t) for t in (" hello", "xyz;\n", "<b>")] == [V, V + 1, V + 2]
    assert "xyz" not in TEXT and " hello" not in TEXT
    for text in (TEXT, "say hi to the world, <a> and <|reserved_000|>\n", generate_text("addition_dummy", 50)):
        assert new.encode(text).tolist() == tok.encode(text).tolist()
    text = "goxyz;\nsay hello <b>"
    ids = new.encode(text).tolist()
    assert {V, V + 1, V + 2} <= set(ids) and new.decode(ids) == text
    again = TextTokenizer.from_json(new.to_json(), new.meta(), vocab_size=V + 3)   # as a model file stores it
    assert again.encode(text).tolist() == ids and again.reserved == tok.reserved
    assert tok.vocab_size == V and tok.hf.token_to_id(" hello") is None   # the input is untouched


def test_bad_tokens_are_refused_with_one_line(base):
    cases = {
        ("",): "empty", (" hello", " hello"): "given twice", ("a",): r"already in the vocabulary \(id 71\)",
        ("<|reserved_000|>",): "already in the vocabulary", (): "no token",
    }
    for tokens, message in cases.items():
        with pytest.raises(VocabularyError, match=message) as err:
            add_tokens(base, list(tokens))
        assert "\n" not in str(err.value)
    with pytest.raises(VocabularyError, match="init must be"):
        add_tokens(base, ["xy"], init="random")
    lower = build_tokenizer("ascii", case_insensitive=True)
    with pytest.raises(VocabularyError, match='give it as "hello"'):
        with_added_tokens(lower, ["Hello"])
    assert with_added_tokens(lower, ["hello"]).encode("HELLO").tolist() == [lower.vocab_size]
    byte = build_tokenizer("byte")
    with pytest.raises(VocabularyError, match="already uses that string as the name of id 233"):
        with_added_tokens(byte, ["é"])       # the byte-level symbol of byte 0xe9
    with pytest.raises(VocabularyError, match="decode it as"):
        with_added_tokens(byte, ["héllo"])   # the tokenizers library's ByteLevel decoder garbles it
    assert with_added_tokens(byte, [" héllo"]).decode([256]) == " héllo"
    grown, _ = add_tokens(base, [" hello"])
    with pytest.raises(VocabularyError, match=r"already in the vocabulary \(id 103\)"):
        add_tokens(grown, [" hello"])


def test_grown_model_saves_reloads_and_trains(base, tmp_path):
    grown, _ = add_tokens(base, [";\n"])
    grown.save(tmp_path / "g.dat")
    again = load(tmp_path / "g.dat")
    V = base.hp.vocab_size
    assert again.hp.vocab_size == V + 1 and again.tokenizer.vocab_size == V + 1 and again.step == 6
    for name, view in grown.model.params.named().items():
        assert again.model.params.named()[name].tobytes() == view.tobytes(), name
    ids = again.tokenizer.encode(TEXT)
    assert (ids == V).sum() == TEXT.count(";\n")           # every ";\n" is now the new token
    losses = []
    for _ in range(5):
        x, y = sample_batch(ids, 4, again.hp.num_tokens, 0, again.optimizer.step)
        losses.append(train_step(again.model, again.optimizer, x, y))
    assert np.isfinite(losses).all() and again.step == 11
    assert again.model.params.named()["token_embedding"][V].any()


def test_replace_reserved_changes_no_tensor(base):
    new = replace_reserved(base, 102, "<|endoftext|>", special=True)
    assert new.model is base.model and new.optimizer is base.optimizer and new.hp == base.hp
    assert new.tokenizer.vocab_size == base.tokenizer.vocab_size
    assert new.tokenizer.reserved == ["<|reserved_000|>"] and new.tokenizer.decode([102]) == "<|endoftext|>"
    assert 102 not in new.tokenizer.encode("a<|endoftext|>")      # special: never matched in text
    log = new.logs[-1]
    assert (log["kind"], log["token_id"], log["token"], log["reserved"], log["special"]) == (
        "ReplaceReserved", 102, "<|endoftext|>", "<|reserved_001|>", True)
    word = replace_reserved(base, 101, "fube;\n")                   # matched in text from now on
    assert word.tokenizer.encode("gofube;\n").tolist() == base.tokenizer.encode("go").tolist() + [101]
    assert word.tokenizer.encode("abc").tolist() == base.tokenizer.encode("abc").tolist()
    assert base.tokenizer.reserved == ["<|reserved_000|>", "<|reserved_001|>"]   # the input is untouched
    for args, message in {(5, "x y"): r'id 5 is not a reserved token \(it is "\\r"\); the reserved ids are 101..102',
                          (999, "x y"): "outside the vocabulary", (101, "a"): "already in the vocabulary",
                          (101, ""): "empty", (101, "<|reserved_001|>"): "already in the vocabulary"}.items():
        with pytest.raises(VocabularyError, match=message):
            replace_reserved(base, *args)
    with pytest.raises(VocabularyError, match="no reserved tokens"):
        replace_reserved(create(replace(base.hp, vocab_size=101), build_tokenizer("ascii"), seed=1), 100, "xy")
    with pytest.raises(VocabularyError, match=r"the reserved ids are 101$"):  # one left: no range 101..101
        replace_reserved(replace_reserved(base, 102, "zz"), 102, "yy")


# ------------------------------------------------------------------------------------ CLI

@pytest.fixture
def workdir(tmp_path, monkeypatch, base):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEMTOGPT_CACHE_DIR", str(tmp_path / "cache"))
    Path("dataset.txt").write_text(TEXT)
    base.save("model.dat")
    return tmp_path


def one_error_line(result):
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_cli_add_tokens_info_and_train(workdir):
    out = run("add-tokens", "--input", "model.dat", "--output", "g.dat", "--token", ";\n", "--token",
              " hello").output
    assert "vocab 103 -> 105" in out and 'id 103: ";\\n"' in out and "kept (step 6" in out
    assert load_model_file(Path("model.dat")).hp.vocab_size == 103            # the input is untouched
    info = json.loads(run("info", "--model", "g.dat", "--json").output)
    assert info["hyperparameters"]["vocab_size"] == 105 and info["tokenizer"]["vocab_size"] == 105
    assert "vocab 105" in run("info", "--model", "g.dat").output
    run("train", "--model", "g.dat", "--dataset", "dataset.txt", "--steps", "2", "--batch-size", "2",
        "--save-every", "2", "--quiet")
    assert load("g.dat").step == 8
    Path("tokens.json").write_text(json.dumps(["fube;\n", " hi"]))
    Path("tokens.txt").write_text("kiba\nboci\n\n")
    run("add-tokens", "--input", "g.dat", "--output", "g.dat", "--tokens-file", "tokens.json", "--init", "mean")
    run("add-tokens", "--input", "g.dat", "--output", "g.dat", "--tokens-file", "tokens.txt")
    g = load("g.dat")
    assert g.hp.vocab_size == 109 and [g.tokenizer.token_str(i) for i in range(103, 109)] == [
        ";\n", " hello", "fube;\n", " hi", "kiba", "boci"]
    assert [log["kind"] for log in g.logs[-3:]] == ["TrainSteps", "AddTokens", "AddTokens"]


def test_cli_add_tokens_bad_input_is_one_line_and_writes_nothing(workdir):
    before = Path("model.dat").read_bytes()
    Path("bad.json").write_text('["ok", 3]')
    cases = [(["--token", "a"], "already in the vocabulary"), (["--token", ""], "empty"),
             (["--token", "xy", "--token", "xy"], "given twice"), ([], "--token"),
             (["--token", "xy", "--tokens-file", "bad.json"], "not both"),
             (["--tokens-file", "bad.json"], "array of strings"), (["--tokens-file", "nope.txt"], "no such file")]
    for args, message in cases:
        line = one_error_line(run("add-tokens", "--input", "model.dat", "--output", "out.dat", *args, ok=False))
        assert message in line, (args, line)
        assert not Path("out.dat").exists()
    line = one_error_line(run("add-tokens", "--input", "model.dat", "--output", "model.dat", "--token", "a",
                              ok=False))
    assert Path("model.dat").read_bytes() == before                    # in place: the file is untouched
    run("add-tokens", "--input", "model.dat", "--output", "out.dat", "--token", "xy")
    line = one_error_line(run("add-tokens", "--input", "model.dat", "--output", "out.dat", "--token", "zz",
                              ok=False))
    assert "--force" in line
    run("add-tokens", "--input", "model.dat", "--output", "out.dat", "--token", "zz", "--force")


def test_cli_replace_reserved(workdir):
    before = load_model_file(Path("model.dat"))
    out = run("replace-reserved", "--input", "model.dat", "--output", "model.dat", "--id", "101",
              "--token", "<|endoftext|>", "--special").output
    assert "Replaced reserved token 101" in out and "no tensor changed (1 reserved left)" in out
    after = load_model_file(Path("model.dat"))
    assert after.hp.vocab_size == 103 and after.logs[-1]["kind"] == "ReplaceReserved"
    assert all(after.tensors[name].tobytes() == t.tobytes() for name, t in before.tensors.items())
    for args, message in [(["--id", "5", "--token", "xy"], "is not a reserved token"),
                          (["--id", "102", "--token", "<|endoftext|>"], "already in the vocabulary"),
                          (["--id", "101", "--token", "xy"], "is not a reserved token")]:
        line = one_error_line(run("replace-reserved", "--input", "model.dat", "--output", "r.dat", *args, ok=False))
        assert message in line and not Path("r.dat").exists(), line
    run("replace-reserved", "--input", "model.dat", "--output", "r.dat", "--id", "102", "--token", " hello")
    r = load("r.dat")
    assert r.tokenizer.encode("say hello").tolist()[-1] == 102
    m = load("model.dat")
    for name, view in m.model.params.named().items():
        assert r.model.params.named()[name].tobytes() == view.tobytes()


def test_cli_reset_optimizer_input_output_and_old_model_flag(workdir):
    run("reset-optimizer", "--input", "model.dat", "--output", "reset.dat")
    assert load("reset.dat").optimizer is None and load("model.dat").optimizer is not None
    line = one_error_line(run("reset-optimizer", "--input", "model.dat", "--output", "reset.dat", ok=False))
    assert "--force" in line
    run("reset-optimizer", "--input", "model.dat", "--output", "reset.dat", "--force")
    out = run("reset-optimizer", "--model", "model.dat").output      # the old command line: in place
    assert "Reset the optimizer of model.dat;" in out and load("model.dat").optimizer is None
    assert "--model" not in run("reset-optimizer", "--help").output   # a hidden alias


def test_cli_swap_kq_old_out_flag(workdir):
    run("swap-kq", "--input", "model.dat", "--out", "s.dat")
    run("swap-kq", "--input", "s.dat", "--output", "s.dat")
    a, b = load("model.dat"), load("s.dat")
    for name, view in a.model.params.named().items():
        assert b.model.params.named()[name].tobytes() == view.tobytes(), name
    assert "--out " not in run("swap-kq", "--help").output


def test_default_init_is_the_cli_default():
    from femtogpt.cli.growth import add_tokens as command

    init = next(p for p in command.params if p.name == "init")
    assert init.default == DEFAULT_INIT and tuple(init.type.choices) == INITS


def test_experiment_smoke(tmp_path):
    """experiments/add_tokens_init.py --smoke runs end to end and writes its JSON."""
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "add_tokens_init.py"), "--smoke", "--out-dir",
                        str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    result = json.loads((tmp_path / "add_tokens_init.json").read_text())
    assert result["smoke"] is True
    assert set(result["inits"]) == set(INITS)
    for init in INITS:
        r = result["inits"][init]
        assert np.isfinite(r["loss_right_after"]) and np.isfinite(r["losses"]).all()
