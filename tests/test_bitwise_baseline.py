"""The redesign guard: 100 training steps with dropout on 2 threads give these exact weights.

The hash was recorded at commit 22cf15c, before the package was reorganised (issue 12), so any later
change to the engine's arithmetic, the batch sampler, the dropout masks or the init shows up here.
It hashes every tensor and both AdamW moments of the saved file, by reference name.

Re-recorded once, for issue 13's AdamW fix: the float32 bias corrections 1 - b^t now use the float32
betas the moments use (they used the float64 betas, ~6.8e-6 relative too large at the first steps).
That is the only change: with the old bias corrections put back, the 22cf15c hash comes out again
(the second test), so the guarded, vectorised update kernel and everything else are bitwise as before.
"""
import hashlib

import numpy as np

from femtogpt.engine import optim
from femtogpt.io.model_file import load_model_file
from tests.run_cli import run

# 100 steps, batch 8, T 16, E 32, L 2, H 4, dropout 0.1, absolute positions, ascii, --threads 2
EXPECTED = "f3b3f8fa2e7331566c7e5d2d115ce9115ce000cbffb7c5aec4f6c8a3fdebead0"  # issue 13: one beta
EXPECTED_22CF15C = "ab676089496c56fe27563631dd8ee1107b0fba98cbe5bc965797f7191a774067"  # float64 betas in 1 - b^t


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


def train_100_steps(tmp_path):
    data, model = tmp_path / "data.txt", tmp_path / "m.dat"
    data.write_text(corpus())
    run("init", "--model", model, "--embedding-degree", 32, "--num-layers", 2, "--num-heads", 4,
        "--num-tokens", 16, "--seed", 7)
    run("train", "--model", model, "--dataset", data, "--steps", 100, "--batch-size", 8, "--dropout", 0.1,
        "--threads", 2, "--seed", 11, "--quiet")
    return weights_hash(model)


def test_100_steps_with_dropout_on_2_threads_match_the_recorded_weights(tmp_path):
    assert train_100_steps(tmp_path) == EXPECTED


def test_the_only_change_since_22cf15c_is_the_bias_correction(tmp_path, monkeypatch):
    def float64_betas(config, t, dtype):  # the bias corrections before issue 13
        f = np.dtype(dtype).type
        return f(1.0 - config.beta1 ** t), f(1.0 - config.beta2 ** t)

    monkeypatch.setattr(optim, "bias_corrections", float64_betas)
    assert train_100_steps(tmp_path) == EXPECTED_22CF15C
