"""The forward pass on the fork's own trained weights reproduces the fork's own logits."""
import json

import numpy as np
import pytest

from femtogpt.config import Hyperparameters
from femtogpt.io.fork_reader import read_fork_model
from femtogpt.model.gpt import GPT
from femtogpt.engine.params import Parameters
from tests.fixture_paths import FORK_FIXTURES as FIXTURES


def load_fork(name):
    fork = read_fork_model(FIXTURES / f"{name}.dat")
    h = fork.hyperparameters
    hp = Hyperparameters(vocab_size=h["vocab_size"], num_tokens=h["num_tokens"],
                         embedding_degree=h["embedding_degree"], num_layers=h["num_layers"],
                         num_heads=h["num_heads"], pos_enc=fork.pos_enc)
    return GPT(hp, Parameters(hp).load(fork.tensors))


@pytest.mark.parametrize("name", ["tiny_more", "tiny_abs", "tiny_inserted", "tiny_bpe_child"])
def test_forward_reproduces_fork_logits(name):
    expected = json.loads((FIXTURES / f"expected_logits_{name}.json").read_text())
    model = load_fork(name)
    logits = model.logits(np.array([expected["input_ids"]]))[0]
    want = np.array(expected["logits"], dtype=np.float32)
    assert logits.shape == want.shape == tuple(expected["logits_shape"])
    np.testing.assert_allclose(logits, want, atol=1e-4, rtol=0)
    # and the loss from the same pass
    z = logits.astype(np.float64)
    lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    ce = lse - z[np.arange(len(z)), expected["target_ids"]]
    np.testing.assert_allclose(ce, expected["per_position_ce_f32"], atol=1e-4)


def test_trained_model_is_discriminating():
    # tiny_more is trained: its loss on the fixture text is far below ln V (a wrong forward is not)
    expected = json.loads((FIXTURES / "expected_logits_tiny_more.json").read_text())
    assert expected["mean_ce_loss_f32"] < 0.5 * np.log(101)
