"""`infer --window slide|half` (issue 13): slide is the Rust fork's rule (every token predicted from a
full forward of the last T tokens), half (the default) keeps the newest T/2 tokens when the window fills."""
import numpy as np
import pytest

from femtogpt.io.checkpoint import load
from tests.models import spread_weights
from tests.run_cli import run

T = 8


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A small model whose logits are far from ties (the reference init's are all ~0), so greedy
    choices do not depend on the last bits of two ways of computing them."""
    path = tmp_path_factory.mktemp("window") / "model.dat"
    run("init", "--model", path, "--embedding-degree", 16, "--num-layers", 2, "--num-heads", 2,
        "--num-tokens", T, "--seed", 3)
    ckpt = load(path)
    spread_weights(ckpt.model.params, 0)
    ckpt.save(path)
    return path


def fork_rule_greedy(model, prompt, count):
    """The fork: each token is the argmax of a full forward of the last T tokens (a slide by one)."""
    window, out = list(prompt), []
    for _ in range(count):
        logits = model.logits(np.array([window[-T:]], dtype=np.int64))[0, -1]
        nxt = int(np.argmax(logits))
        out.append(nxt)
        window.append(nxt)
    return out


def infer_ids(ckpt, model_file, prompt, count, *flags):
    out = run("infer", prompt, "--model", model_file, "--count", count, "--temperature", 0, *flags).output
    assert out.startswith(prompt) and out.endswith("\n")
    return [int(i) for i in ckpt.tokenizer.encode(out[len(prompt):-1])]


def test_window_slide_is_the_forks_rule_past_the_context(model_file):
    ckpt = load(model_file)
    prompt, count = "hello", 4 * T  # well past T tokens: the window slides 3 * T + 5 times
    expected = fork_rule_greedy(ckpt.model, [int(i) for i in ckpt.tokenizer.encode(prompt)], count)
    assert infer_ids(ckpt, model_file, prompt, count, "--window", "slide") == expected


def test_window_half_is_the_default_and_keeps_the_newest_half(model_file):
    from femtogpt.model.generate import generate

    ckpt = load(model_file)
    prompt, count = "hello", 4 * T
    ids = [int(i) for i in ckpt.tokenizer.encode(prompt)]
    default = infer_ids(ckpt, model_file, prompt, count)
    assert default == infer_ids(ckpt, model_file, prompt, count, "--window", "half")
    assert default == generate(ckpt.model, ids, count, temperature=0, keep=T // 2)
    slide = infer_ids(ckpt, model_file, prompt, count, "--window", "slide")
    assert slide == generate(ckpt.model, ids, count, temperature=0, keep=T)
    assert slide != default  # the two rules part once the window first fills


def test_window_refuses_other_rules(model_file):
    result = run("infer", "--model", model_file, "--window", "third", ok=False)
    assert result.exit_code == 2 and "Error: Invalid value for '--window'" in result.output
