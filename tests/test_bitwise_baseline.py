"""The redesign guard: 100 training steps with dropout on 2 threads give these exact weights.

The hash was recorded at commit 22cf15c, before the package was reorganised (issue 12), so any later
change to the engine's arithmetic, the batch sampler, the dropout masks or the init shows up here.
It hashes every tensor and both AdamW moments of the saved file, by reference name.
"""
import hashlib

import numpy as np

from femtogpt.io.model_file import load_model_file
from tests.run_cli import run

# 100 steps, batch 8, T 16, E 32, L 2, H 4, dropout 0.1, absolute positions, ascii, --threads 2
EXPECTED = "ab676089496c56fe27563631dd8ee1107b0fba98cbe5bc965797f7191a774067"


def corpus():
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    rng = np.random.default_rng(1234)
    return " ".join(words[i] for i in rng.integers(0, len(words), 4000)) + "\n"


def weights_hash(path):
    mf = load_model_file(path)
    h = hashlib.sha256()
    for group in (mf.tensors, mf.optimizer["m"], mf.optimizer["v"]):
        for name in sorted(group):
            h.update(name.encode())
            h.update(np.ascontiguousarray(group[name], dtype="<f4").tobytes())
    h.update(str(mf.optimizer["step"]).encode())
    return h.hexdigest()


def test_100_steps_with_dropout_on_2_threads_match_the_recorded_weights(tmp_path):
    data, model = tmp_path / "data.txt", tmp_path / "m.dat"
    data.write_text(corpus())
    run("init", "--model", model, "--embedding-degree", 32, "--num-layers", 2, "--num-heads", 4,
        "--num-tokens", 16, "--seed", 7)
    run("train", "--model", model, "--dataset", data, "--steps", 100, "--batch-size", 8, "--dropout", 0.1,
        "--threads", 2, "--seed", 11, "--quiet")
    assert weights_hash(model) == EXPECTED
