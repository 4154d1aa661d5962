"""infer --show-probs / --json (issue 16): the top-K probabilities beside each generated token, from the
model's own logits, without changing what is sampled."""
import json

import numpy as np

from femtogpt.io.checkpoint import load
from tests.run_cli import run, tiny_model_folder


def test_show_probs_and_json_report_the_models_probabilities_and_sample_the_same(tmp_path, monkeypatch):
    tiny_model_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    run("train", "--steps", 30, "--batch-size", 4, "--quiet", "--lr", "3e-3", "--warmup", 0)
    plain = run("infer", "hel", "--count", 12, "--seed", 4).output
    data = json.loads(run("infer", "hel", "--count", 12, "--seed", 4, "--json", "--show-probs", 4).output)
    assert "hel" + data["text"] + "\n" == plain  # showing probabilities samples the same tokens
    assert len(data["tokens"]) == 12
    model = load(tmp_path / "model.dat")
    tok = model.tokenizer
    ids = tok.encode("hel")
    logits = model.model.logits(np.asarray([ids]))[0, -1].astype(np.float64)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    first = data["tokens"][0]
    assert abs(first["prob"] - p[first["id"]]) < 1e-5 and first["token"] == tok.decode([first["id"]])
    for step in data["tokens"]:
        probs = [q for _, q in step["top"]]
        assert len(probs) == 4 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-9
        assert step["prob"] <= probs[0] + 1e-12
    lines = run("infer", "hel", "--count", 3, "--seed", 4, "--show-probs", 2).output.splitlines()
    assert lines[0] == 'prompt: "hel"' and len(lines) == 2 + 3 + 1 and lines[-1].startswith('text: "hel')
    assert all(" |  " in line for line in lines[2:5])
