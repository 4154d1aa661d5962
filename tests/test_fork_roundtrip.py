"""`convert --to fork|femtogpt`: the fork's files through femtogpt and back are the same files (every
tensor, moment, token, hyperparameter and log; the bytes too, once the fork's hash maps are put back in
their order), femtogpt's models through the fork keep every tensor and moment bitwise, and what the
fork cannot hold is refused in one line with nothing written."""
import dataclasses
import struct

import numpy as np
import pytest
from click.testing import CliRunner

from femtogpt.cli import cli
from femtogpt.io.checkpoint import load
from femtogpt.io.fork_convert import ForkExportError, fork_model_from_checkpoint, fork_tensor_shapes
from femtogpt.io.fork_reader import ForkFileError, ForkModel, parse_fork_model, read_fork_model
from femtogpt.io.fork_writer import encode_fork_model, write_fork_model
from femtogpt.io.logs import expanded
from femtogpt.io.model_file import load_model_file
from tests.fixture_paths import FORK_FIXTURES as FIXTURES

MODELS = ["tiny_abs", "tiny_bpe_child", "tiny_inserted", "tiny_more"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def convert(src, dst, to):
    result = run("convert", "--input", src, "--output", dst, "--to", to)
    assert result.exit_code == 0, result.output
    return result


def bits(a):
    return a.view(np.uint32)                      # bitwise: -0.0 and 0.0, NaN payloads all differ


def assert_same_model(a: ForkModel, b: ForkModel):
    """Every decoded field equal; map order aside (the fork writes its hash maps in random order)."""
    assert (a.tokenizer_unit, a.case_sensitive, a.unk_id, a.pos_enc, a.optimizer_step) == (
        b.tokenizer_unit, b.case_sensitive, b.unk_id, b.pos_enc, b.optimizer_step)
    assert a.tokens == b.tokens and list(a.hyperparameters.items()) == list(b.hyperparameters.items())
    for mine, theirs in ((a.tensors, b.tensors), (a.optimizer_state, b.optimizer_state)):
        assert mine.keys() == theirs.keys()
        for k in mine:
            assert mine[k].shape == theirs[k].shape and np.array_equal(bits(mine[k]), bits(theirs[k])), k
    assert len(a.logs) == len(b.logs)
    for x, y in zip(a.logs, b.logs):                # floats as their f32 bits, so NaN compares too
        f32 = lambda log: {k: struct.pack("<f", v) if isinstance(v, float) else v for k, v in log.items()}
        assert f32(x) == f32(y) and len(x["id"]) == 32, (x, y)


def in_order_of(m: ForkModel, like: ForkModel) -> ForkModel:
    """m with its hash maps in the order `like` has them."""
    return dataclasses.replace(m, tokens={k: m.tokens[k] for k in like.tokens},
                               tensors={k: m.tensors[k] for k in like.tensors},
                               optimizer_state={k: m.optimizer_state[k] for k in like.optimizer_state})


# ------------------------------------------------------------------------------------------ the writer


@pytest.mark.parametrize("name", MODELS)
def test_writing_a_parsed_fixture_gives_its_exact_bytes(name):
    data = (FIXTURES / f"{name}.dat").read_bytes()
    assert encode_fork_model(parse_fork_model(data)) == data


def test_writer_refuses_what_the_fork_cannot_read(tmp_path):
    good = read_fork_model(FIXTURES / "tiny_inserted.dat")
    bad_cases = {
        "Eval": dataclasses.replace(good, logs=good.logs + [{"id": "e" * 32, "kind": "Eval"}]),
        "has fields the fork has no place for: seed": dataclasses.replace(
            good, logs=[{**good.logs[0], "seed": 1}] + good.logs[1:]),
        "tokenizer unit is 'word'": dataclasses.replace(good, tokenizer_unit="word"),
        "pos_enc is 'rotary'": dataclasses.replace(good, pos_enc="rotary"),
        "optimizer step is 18446744073709551616": dataclasses.replace(good, optimizer_step=2**64),
        "unk id 999 is not a token id": dataclasses.replace(good, unk_id=999),
        "is not a float32 array": dataclasses.replace(
            good, tensors={**good.tensors, "token_embedding": good.tensors["token_embedding"].astype(np.float64)}),
    }
    out = tmp_path / "out.dat"
    for expected, model in bad_cases.items():
        with pytest.raises(ForkFileError) as e:
            write_fork_model(out, model)
        assert expected in str(e.value) and "\n" not in str(e.value) and str(out) in str(e.value), str(e.value)
        assert not out.exists()
    write_fork_model(out, good)
    assert out.read_bytes() == (FIXTURES / "tiny_inserted.dat").read_bytes()


# ------------------------------------------------------------------------------------------ fork -> femtogpt -> fork


@pytest.mark.parametrize("name", MODELS)
def test_fork_file_through_femtogpt_and_back_is_the_same_file(tmp_path, name):
    src = FIXTURES / f"{name}.dat"
    convert(src, tmp_path / "a.model", "femtogpt")
    result = convert(tmp_path / "a.model", tmp_path / "b.dat", "fork")
    assert "note:" not in result.output                       # nothing of a fork file is dropped
    original, back = read_fork_model(src), read_fork_model(tmp_path / "b.dat")
    assert_same_model(back, original)
    # byte for byte, once the hash maps are in the fixture's (random) order again
    assert encode_fork_model(in_order_of(back, original)) == src.read_bytes()
    # and the order we write is determined: a second trip gives the same bytes
    convert(tmp_path / "b.dat", tmp_path / "c.model", "femtogpt")
    convert(tmp_path / "c.model", tmp_path / "d.dat", "fork")
    assert (tmp_path / "d.dat").read_bytes() == (tmp_path / "b.dat").read_bytes()
    assert sorted(back.tokens) == list(back.tokens)           # ids ascending


def test_import_fork_is_a_hidden_alias_of_convert(tmp_path):
    src = FIXTURES / "tiny_abs.dat"
    assert run("import-fork", src, tmp_path / "a.model").exit_code == 0
    convert(src, tmp_path / "b.model", "femtogpt")
    assert (tmp_path / "a.model").read_bytes() == (tmp_path / "b.model").read_bytes()
    listing = run("--help").output
    assert "convert" in listing and "import-fork" not in listing


def test_what_femtogpt_had_no_place_for_survives(tmp_path):
    # a Byte-unit tokenizer, an optimizer step stored without moments, a GPU step: kept through femtogpt
    m = read_fork_model(FIXTURES / "tiny_inserted.dat")
    step_at = next(i for i, log in enumerate(m.logs) if log["kind"] == "TrainStep")
    logs = [dict(log) for log in m.logs]
    logs[step_at]["is_gpu"] = True
    crafted = dataclasses.replace(m, tokenizer_unit="byte", optimizer_step=7, logs=logs)
    write_fork_model(tmp_path / "x.dat", crafted)
    convert(tmp_path / "x.dat", tmp_path / "x.model", "femtogpt")
    convert(tmp_path / "x.model", tmp_path / "y.dat", "fork")
    back = read_fork_model(tmp_path / "y.dat")
    assert_same_model(back, crafted)
    assert encode_fork_model(in_order_of(back, crafted)) == (tmp_path / "x.dat").read_bytes()
    # once femtogpt logs more (a reset here), the stored step no longer describes the model
    ckpt = load(tmp_path / "x.model")
    ckpt.reset_optimizer()
    assert fork_model_from_checkpoint(ckpt)[0].optimizer_step == 0


def test_attention_width_other_than_embedding_round_trips(tmp_path):
    # the fork stores head_size: H * hs need not be E (proj is (H*hs, E)), and femtogpt holds it too
    h = dict(num_tokens=4, vocab_size=3, embedding_degree=4, num_layers=1, num_heads=2, head_size=3)
    rng = np.random.default_rng(0)
    tensors = {n: rng.standard_normal(s).astype(np.float32) for n, s in fork_tensor_shapes(h).items()}
    moments = {f"{n}_{k}": np.abs(rng.standard_normal(a.shape)).astype(np.float32)
               for n, a in tensors.items() for k in "mv"}
    m = ForkModel("char", True, 2, {0: b"a", 1: b"b", 2: b"<unk>"}, "absolute", h, tensors, 5, moments,
                  [{"id": "0" * 32, "kind": "Init", "hyperparameters": h}])
    write_fork_model(tmp_path / "w.dat", m)
    convert(tmp_path / "w.dat", tmp_path / "w.model", "femtogpt")
    assert load_model_file(tmp_path / "w.model").tensors["proj_0_weights"].shape == (6, 4)
    convert(tmp_path / "w.model", tmp_path / "w2.dat", "fork")
    assert (tmp_path / "w2.dat").read_bytes() == (tmp_path / "w.dat").read_bytes()  # our order, both times


# --------------------------------------------------------------------------------------- femtogpt -> fork -> femtogpt


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A femtogpt model: char tokenizer with 2 reserved tokens, trained 3 steps with an evaluation."""
    d = tmp_path_factory.mktemp("trained")
    (d / "dataset.txt").write_text("hello world, hello femtogpt. " * 40)
    for args in (["init", "--model", d / "m.dat", "--tokenizer", "char", "--tokenizer-data", d / "dataset.txt",
                  "--reserve-tokens", 2, "--embedding-degree", 8, "--num-layers", 1, "--num-heads", 2,
                  "--num-tokens", 8, "--seed", 1],
                 ["train", "--model", d / "m.dat", "--dataset", d / "dataset.txt", "--steps", 3, "--batch-size", 2,
                  "--eval-every", 2, "--val-fraction", 0.1, "--threads", 1]):
        result = run(*args)
        assert result.exit_code == 0, result.output
    return d


def test_femtogpt_model_through_the_fork_keeps_every_tensor_and_moment(trained, tmp_path):
    src = trained / "m.dat"
    result = convert(src, tmp_path / "m.fork", "fork")
    notes = [line for line in result.output.splitlines() if line.startswith("note: ")]
    assert any("dropped: 1 Eval" in n for n in notes) and any("training settings (batch_size" in n for n in notes)
    assert any("2 special tokens" in n for n in notes), notes
    fork = read_fork_model(tmp_path / "m.fork")
    assert fork.tokens[fork.unk_id] == b"<unk>" and fork.tokenizer_unit == "char" and fork.case_sensitive
    assert {k: a.shape for k, a in fork.tensors.items()} == fork_tensor_shapes(fork.hyperparameters)
    convert(tmp_path / "m.fork", tmp_path / "back.dat", "femtogpt")
    a, b = load_model_file(src), load_model_file(tmp_path / "back.dat")
    assert a.hp == b.hp
    for name in a.tensors:
        assert np.array_equal(bits(a.tensors[name]), bits(b.tensors[name])), name
        for key in "mv":
            assert np.array_equal(bits(a.optimizer[key][name]), bits(b.optimizer[key][name])), (key, name)
    assert a.optimizer["step"] == b.optimizer["step"] == 3
    ta, tb = load(src).tokenizer, load(tmp_path / "back.dat").tokenizer
    assert [ta.token_bytes(i) for i in range(ta.vocab_size)] == [tb.token_bytes(i) for i in range(tb.vocab_size)]
    assert (ta.unk_id, ta.case_insensitive) == (tb.unk_id, tb.case_insensitive)
    text = "hello femtogpt"
    assert list(ta.encode(text)) == list(tb.encode(text))
    # every log but the Eval comes back with its id (steps by their expanded ids), kind and values
    kept = [log for log in expanded(a.logs) if log["kind"] != "Eval"]
    back = expanded(b.logs)
    assert [(log["id"], log["kind"]) for log in kept] == [(log["id"], log["kind"]) for log in back]
    assert [np.float32(log["loss"]) for log in kept if log["kind"] == "TrainStep"] == \
        [np.float32(log["loss"]) for log in back if log["kind"] == "TrainStep"]
    # and a second trip through the fork writes the same bytes
    convert(tmp_path / "back.dat", tmp_path / "again.fork", "fork")
    assert (tmp_path / "again.fork").read_bytes() == (tmp_path / "m.fork").read_bytes()


def test_case_insensitive_ascii_is_the_forks_75_tokens(tmp_path):
    m = tmp_path / "m.dat"
    assert run("init", "--model", m, "--case-insensitive", "--embedding-degree", 8, "--num-layers", 1,
               "--num-heads", 2, "--num-tokens", 8, "--seed", 1).exit_code == 0
    convert(m, tmp_path / "m.fork", "fork")
    fork = read_fork_model(tmp_path / "m.fork")
    assert len(fork.tokens) == 75 and not fork.case_sensitive and fork.optimizer_step == 0
    assert fork.optimizer_state == {} and [log["kind"] for log in fork.logs] == ["Init"]


def test_a_token_list_keeps_its_ids_and_unk(tmp_path):
    (tmp_path / "list.json").write_text('["hel", "lo", "h", "e", "l", "o", " "]')
    m = tmp_path / "m.dat"
    assert run("init", "--model", m, "--tokenizer", "bpe", "--tokenizer-data", tmp_path / "list.json",
               "--embedding-degree", 8, "--num-layers", 1, "--num-heads", 2, "--num-tokens", 8).exit_code == 0
    convert(m, tmp_path / "m.fork", "fork")
    fork = read_fork_model(tmp_path / "m.fork")
    assert fork.tokens == {0: b"<unk>", 1: b"hel", 2: b"lo", 3: b"h", 4: b"e", 5: b"l", 6: b"o", 7: b" "}
    assert fork.unk_id == 0 and fork.case_sensitive


# ------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("flags, expected", [
    (["--tokenizer", "byte"], "cannot be a fork tokenizer: it is byte-level"),
    (["--positional-encoding", "learned"], "pos_enc 'learned' has no place in a fork file"),
    (["--positional-encoding", "rotary"], "pos_enc 'rotary' has no place in a fork file"),
])
def test_what_the_fork_cannot_hold_is_one_line_and_no_file(tmp_path, flags, expected):
    m = tmp_path / "m.dat"
    result = run("init", "--model", m, "--embedding-degree", 8, "--num-layers", 1, "--num-heads", 2,
                 "--num-tokens", 8, "--seed", 1, *flags)
    assert result.exit_code == 0, result.output
    result = run("convert", "--input", m, "--output", tmp_path / "m.fork", "--to", "fork")
    assert result.exit_code == 1 and result.output.count("\n") == 1 and expected in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.dat"]


def test_wrong_kind_of_input_and_existing_output_are_refused(tmp_path, trained):
    cases = [(["--input", FIXTURES / "tiny_abs.dat", "--to", "fork"], "is already a fork model file"),
             (["--input", trained / "m.dat", "--to", "femtogpt"], "is already a femtogpt model file"),
             (["--input", tmp_path / "missing.dat", "--to", "fork"], "no such file")]
    for args, expected in cases:
        result = run("convert", "--output", tmp_path / "out", *args)
        assert result.exit_code == 1 and expected in result.output and "\n" not in result.output.rstrip()
        assert not (tmp_path / "out").exists()
    (tmp_path / "out").write_text("keep me")
    result = run("convert", "--input", trained / "m.dat", "--output", tmp_path / "out", "--to", "fork")
    assert result.exit_code == 1 and "pass --force" in result.output
    assert (tmp_path / "out").read_text() == "keep me"
    assert run("convert", "--input", trained / "m.dat", "--output", tmp_path / "out", "--to", "fork",
               "--force").exit_code == 0
    read_fork_model(tmp_path / "out")


def test_tensors_that_do_not_match_the_hyperparameters_are_refused(trained):
    ckpt = load(trained / "m.dat")
    ckpt.hp = dataclasses.replace(ckpt.hp, num_layers=2)     # the tensors are of 1 layer
    with pytest.raises(ForkExportError, match="the model has no tensor"):
        fork_model_from_checkpoint(ckpt, "m.dat")


def test_the_kept_fork_fields_are_checked_as_a_map(trained, tmp_path):
    from femtogpt.io.model_file import ModelFileError, save_model_file

    mf = load_model_file(trained / "m.dat")
    mf.train_state = {**mf.train_state, "fork": 5}
    with pytest.raises(ModelFileError, match="train_state.fork is 5, expected a map"):
        save_model_file(tmp_path / "x.dat", mf)
    mf.train_state["fork"] = {"unit": 7, "optimizer_step": "x"}   # a map of nonsense: ignored, never a crash
    save_model_file(tmp_path / "x.dat", mf)
    fork, _ = fork_model_from_checkpoint(load(tmp_path / "x.dat"))
    assert fork.tokenizer_unit == "char" and fork.optimizer_step == 3
