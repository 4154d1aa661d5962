"""compare: lineage on log ids (no off-by-one), cosines (n/a for zero tensors), pairs of every kind
(parent/child, siblings, identical, unrelated, different shapes, different vocabularies), and the CLI's
text and JSON output."""
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from femtogpt.io.logs import new_log
from femtogpt.io.model_file import load_model_file
from femtogpt.cli import cli
from femtogpt.growth.compare import compare_models, cosine, lineage, lineage_sentences
from femtogpt.config import Hyperparameters, OptimizerConfig
from femtogpt.tasks.toy_data import generate_text
from femtogpt.io.checkpoint import create
from femtogpt.growth.surgery import init_with, insert_layer
from femtogpt.text.build import build_tokenizer
from femtogpt.text.tokenizer_files import from_token_list
from femtogpt.train.loop import TrainOptions, run_training

HP = Hyperparameters(vocab_size=101, num_tokens=8, embedding_degree=16, num_layers=2, num_heads=2,
                     pos_enc="none")
TEXT = generate_text("simple_dummy", 300, seed=2)


class _Quiet:
    def step(self, *a): pass
    def validation(self, *a): pass
    def close(self): pass


def train(session, steps, seed=0):
    """`steps` real training steps through the trainer, so the logs are what `train` writes."""
    tokens = session.tokenizer.encode(TEXT)
    session.ensure_optimizer(OptimizerConfig(lr=1e-2, warmup=0))
    run_training(session, tokens, TrainOptions(steps=steps, seed=seed, batch_size=4), lambda: None, _Quiet())
    return session


def fresh(seed=0):
    return create(HP, build_tokenizer("ascii"), seed=seed)


def copy(session):
    from femtogpt.io.checkpoint import from_model_file
    return from_model_file(session.to_model_file())


def logs(*kinds):
    return [new_log(k) for k in kinds]


# ------------------------------------------------------------------------------------ lineage

def test_lineage_counts_steps_after_the_divergence_exactly():
    shared = logs("Init", "TrainSession", "TrainStep", "TrainStep", "TrainStep")
    a = shared + logs("TrainSession", "TrainStep", "TrainStep")
    b = shared + logs("TrainSession", "TrainStep", "TrainStep", "TrainStep", "TrainStep")
    lin = lineage(a, b)
    assert (lin.relation, lin.shared_logs, lin.shared_steps, lin.steps_a, lin.steps_b) == \
        ("siblings", 5, 3, 2, 4)  # the reference says 3 and 5: it counts the last shared log twice
    assert lineage_sentences(lin, "a.dat", "b.dat") == [
        "a.dat and b.dat have the same parent.",
        "a.dat is 2-steps further trained version of the parent.",
        "b.dat is 4-steps further trained version of the parent."]


def test_lineage_parent_child_both_ways_identical_and_unrelated():
    parent = logs("Init", "TrainSession", "TrainStep")
    child = parent + logs("TrainSession", "TrainStep", "TrainStep")
    lin = lineage(parent, child)
    assert lin.relation == "a_parent_of_b" and (lin.steps_a, lin.steps_b) == (0, 2)
    assert lineage_sentences(lin, "p", "c") == ["p is parent of c.", "c is 2-steps further trained version of p"]
    assert lineage_sentences(lineage(child, parent), "c", "p") == [
        "p is parent of c.", "c is 2-steps further trained version of p"]
    same = lineage(child, list(child))
    assert same.relation == "identical"
    assert lineage_sentences(same, "x", "y") == [
        "x and y have gone through the same training session. There's nothing to compare.",
        "The parent has been trained for 3 steps."]
    other = lineage(logs("Init", "TrainStep"), child)
    assert other.relation == "unrelated" and lineage_sentences(other, "u", "c") == ["u and c are unrelated."]


def test_lineage_names_events_after_the_shared_history():
    parent = logs("Init", "TrainSession", "TrainStep")
    grown = parent + [new_log("InsertLayer", index=1, init="near-identity")] + logs("ResetOptimizer")
    lines = lineage_sentences(lineage(parent, grown), "p", "g")
    assert lines[:2] == ["p is parent of g.", "g is 0-steps further trained version of p"]
    assert lines[2] == "After the shared history, g also went through: insert-layer at 1 (near-identity), " \
                       "reset-optimizer."


def test_vocabulary_events_are_named_by_their_commands():
    parent = logs("Init", "TrainSession", "TrainStep")
    grown = parent + [new_log("AddTokens", tokens=["ab", "cd"], first_id=101, init="mean"),
                      new_log("ReplaceReserved", token_id=103, token="x", reserved="<|reserved_000|>",
                              special=False)]
    lines = lineage_sentences(lineage(parent, grown), "p", "g")
    assert lines[2] == "After the shared history, g also went through: add-tokens (2 tokens), " \
                       "replace-reserved (id 103)."


def test_cosine_handles_zero_tensors():
    assert cosine(np.ones(3), 2 * np.ones(3)) == (1.0, None)
    assert cosine(np.array([1.0, 0]), np.array([0.0, 1])) == (0.0, None)
    assert cosine(np.zeros(3), np.zeros(3)) == (None, "zero in both")
    assert cosine(np.zeros(3), np.ones(3)) == (None, "zero in A")
    assert cosine(np.ones(3), np.zeros(3)) == (None, "zero in B")
    assert cosine(np.array([1.0, 2.0]), np.array([-1.0, -2.0]))[0] == -1.0


# ------------------------------------------------------------------------------------ model pairs

def test_parent_and_child():
    parent = train(fresh(), 3)
    child = train(copy(parent), 4, seed=1)
    r = compare_models(parent.to_model_file(), child.to_model_file())
    assert (r.lineage.relation, r.lineage.steps_b) == ("a_parent_of_b", 4)
    cos = [e["cosine"] for e in r.tensors if e["cosine"] is not None]
    assert cos == sorted(cos) and cos[0] < 1.0
    assert not r.only_in_a and not r.only_in_b and not r.shape_mismatch
    names = {e["name"] for e in r.tensors}
    assert "token_embedding" not in names and len(names) == len(parent.model.params.named()) - 1
    assert len(r.tokens) == HP.vocab_size * HP.num_heads
    rev = compare_models(parent.to_model_file(), child.to_model_file(), reverse=True)
    rc = [e["cosine"] for e in rev.tensors if e["cosine"] is not None]
    assert rc == sorted(rc, reverse=True)


def test_siblings_and_zero_tensors_are_na():
    base = train(fresh(), 2)
    a, b = train(copy(base), 2, seed=1), train(copy(base), 3, seed=2)
    r = compare_models(a.to_model_file(), b.to_model_file())
    assert (r.lineage.relation, r.lineage.shared_steps, r.lineage.steps_a, r.lineage.steps_b) == \
        ("siblings", 2, 2, 3)
    untrained = fresh(5)  # biases are all zero at init: n/a, never NaN, and listed last
    r = compare_models(untrained.to_model_file(), copy(untrained).to_model_file())
    na = [e for e in r.tensors if e["cosine"] is None]
    assert na and all(e["name"].endswith("_bias") and e["reason"] == "zero in both" for e in na)
    assert r.tensors[-len(na):] == na
    assert all(e["cosine"] == pytest.approx(1.0) for e in r.tensors[:-len(na)])


def test_identical_and_unrelated():
    a = train(fresh(), 2)
    r = compare_models(a.to_model_file(), copy(a).to_model_file())
    assert r.lineage.relation == "identical" and r.lineage.shared_steps == 2
    assert all(e["cosine"] is None or e["cosine"] == pytest.approx(1.0) for e in r.tensors + r.tokens)
    r = compare_models(a.to_model_file(), fresh(seed=9).to_model_file())
    assert r.lineage.relation == "unrelated" and r.tensors and r.tokens  # says so, still compares


def test_different_shapes_insert_layer_alignment_and_by_name():
    parent = train(fresh(), 2)
    grown, _ = insert_layer(parent, 1, init="near-identity", seed=3)
    a, b = parent.to_model_file(), grown.to_model_file()
    r = compare_models(a, b)
    assert r.hyperparameters_differ == {"num_layers": [2, 3]}
    assert r.layer_map == {0: 0, 1: 2}
    moved = {e["name"]: e for e in r.tensors if "name_b" in e}
    assert moved["proj_1_weights"]["name_b"] == "proj_2_weights" and moved["proj_1_weights"]["cosine"] == 1.0
    assert set(r.only_in_b) == {n for n in b.tensors if n.startswith(("norm_1_", "head_1_", "proj_1_",
                                                                       "atten_norm_1_", "feedforward1_1_",
                                                                       "feedforward2_1_"))}
    assert not r.only_in_a and not r.shape_mismatch
    r = compare_models(a, b, align_layers=False)  # by name: layer 1 against the new layer, layer 2 alone
    assert r.layer_map is None and all("name_b" not in e for e in r.tensors)
    assert "proj_2_weights" in r.only_in_b
    # an unrelated model of another width: nothing matches but the shape-free names are listed
    wide = create(Hyperparameters(vocab_size=101, num_tokens=8, embedding_degree=8, num_layers=1, num_heads=2),
                  build_tokenizer("ascii"), seed=1)
    r = compare_models(a, wide.to_model_file())
    assert r.lineage.relation == "unrelated" and not r.tokens and r.notes
    assert {m["name"] for m in r.shape_mismatch} >= {"token_embedding", "proj_0_weights"}
    assert "norm_1_coeff" in r.only_in_a


def test_init_with_child_compares_shared_tokens():
    parent = train(fresh(), 2)
    tok = from_token_list(["a", "b", ";"])
    child, _ = init_with(parent, tok, seed=1, keep_shared_tokens=True)
    r = compare_models(parent.to_model_file(), child.to_model_file())
    assert r.lineage.relation == "a_parent_of_b"
    assert [describe["kind"] for describe in r.lineage.events_b] == ["InitWith"]
    assert {m["name"] for m in r.shape_mismatch} == {"token_embedding", "head_map_weights", "head_map_bias"}
    assert all(e["cosine"] == 1.0 for e in r.tensors if e["cosine"] is not None)
    assert len(r.tokens) == 4 * HP.num_heads and all(e["cosine"] == 1.0 for e in r.tokens)
    semi = [e for e in r.tokens if e["token"] == ";"]
    assert semi[0]["token_id"] == int(parent.tokenizer.encode(";")[0])
    assert semi[0]["token_id_b"] == int(tok.encode(";")[0])


# ------------------------------------------------------------------------------------ CLI

def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parent = train(fresh(), 2)
    parent.save("p.dat")
    train(copy(parent), 3, seed=1).save("c.dat")
    insert_layer(parent, 2, seed=1)[0].save("i.dat")
    return tmp_path


def test_cli_text_output(models):
    out = run("compare", "p.dat", "c.dat", "--limit", "3").splitlines()
    assert out[:2] == ["p.dat is parent of c.dat.", "c.dat is 3-steps further trained version of p.dat"]
    keys = [line for line in out if line.startswith("key: ")]
    toks = [line for line in out if line.startswith("token_id: ")]
    assert len(keys) == 3 and len(toks) == 3
    values = [float(line.rsplit(" ", 1)[1]) for line in keys]
    assert values == sorted(values)
    assert all(len(line.rsplit(" ", 1)[1].split(".")[1]) == 6 for line in keys)
    assert ", token: '" in toks[0] and ", head: " in toks[0]
    out = run("compare", "c.dat", "i.dat", "--limit", "0")
    assert "c.dat and i.dat have the same parent." in out
    assert "After the shared history, i.dat also went through: insert-layer at 2 (near-identity)." in out
    assert "num_layers differs: 2 in c.dat, 3 in i.dat" in out
    assert "Only in i.dat (16): norm_2_coeff" in out
    assert "NaN" not in out and "nan" not in out


def test_cli_json_output(models):
    data = json.loads(run("compare", "p.dat", "i.dat", "--json", "--limit", "5"))
    assert set(data) >= {"lineage", "tensors", "tokens", "only_in_a", "only_in_b", "shape_mismatch",
                         "hyperparameters_differ", "layer_map"}
    assert data["lineage"]["relation"] == "a_parent_of_b"
    assert data["lineage"]["sentences"][0] == "p.dat is parent of i.dat."
    assert data["lineage"]["events_b"] == ["insert-layer at 2 (near-identity)"]
    assert len(data["tensors"]) == 5 and len(data["tokens"]) == 5
    assert all(set(e) >= {"name", "cosine"} for e in data["tensors"])
    assert all(set(e) >= {"token_id", "token", "head", "cosine"} for e in data["tokens"])
    assert len(data["only_in_b"]) == 16 and data["only_in_a"] == [] and data["shape_mismatch"] == []
    full = json.loads(run("compare", "p.dat", "i.dat", "--json", "--limit", "0"))
    na = [e for e in full["tensors"] if e["cosine"] is None]
    assert na == [] or all(e["reason"].startswith("zero") for e in na)
    assert len(full["tokens"]) == HP.vocab_size * HP.num_heads
    assert Path("p.dat").exists() and load_model_file(Path("i.dat")).hp.num_layers == 3


def test_cli_missing_file_is_one_line(models):
    result = CliRunner().invoke(cli, ["compare", "p.dat", "nope.dat"])
    assert result.exit_code == 1 and "nope.dat" in result.output and "Traceback" not in result.output
