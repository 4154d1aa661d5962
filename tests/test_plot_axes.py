"""Loss against time and tokens (issue 16): validation losses are stored with the training seconds and
tokens seen when they were measured, across sessions, and plot --x step|time|tokens draws them."""
import pytest

from femtogpt.io import logs as L
from femtogpt.io.model_file import load_model_file
from femtogpt.tools.plotting import curves_from_logs
from tests.run_cli import run, tiny_model_folder


@pytest.fixture
def trained(tmp_path, monkeypatch):
    tiny_model_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    common = ["--val-fraction", "0.2", "--eval-every", 2, "--quiet"]
    run("train", "--steps", 4, "--batch-size", 2, *common)
    run("train", "--steps", 4, "--batch-size", 3, *common)  # a second session, another batch size
    return tmp_path


def test_validation_is_stored_with_the_seconds_and_tokens_trained_so_far(trained):
    mf = load_model_file(trained / "model.dat")
    T = mf.hp.num_tokens
    evals = [log for log in mf.logs if log["kind"] == L.EVAL]
    assert [e["step"] for e in evals] == [2, 4, 6, 8]
    assert [e["tokens"] for e in evals] == [2 * 2 * T, 4 * 2 * T, 4 * 2 * T + 2 * 3 * T, 4 * 2 * T + 4 * 3 * T]
    at = {log["id"]: (seconds, tokens) for log, _, seconds, tokens in L.timeline(mf.logs, T)}
    for e in evals:  # the loop's running totals are the timeline's
        assert e["seconds"] == pytest.approx(at[e["id"]][0], abs=1e-3) and e["tokens"] == at[e["id"]][1]
    assert 0 < evals[0]["seconds"] <= evals[-1]["seconds"]


def test_plot_against_steps_time_and_tokens(trained):
    mf = load_model_file(trained / "model.dat")
    T = mf.hp.num_tokens
    steps = curves_from_logs(mf.logs, "step", T)
    tokens = curves_from_logs(mf.logs, "tokens", T)
    time = curves_from_logs(mf.logs, "time", T)
    assert steps["train"][0] == list(range(1, 9)) and steps["val"][0] == [2, 4, 6, 8]
    assert tokens["train"][0][:5] == [2 * T, 4 * T, 6 * T, 8 * T, 11 * T]
    assert time["train"][0] == sorted(time["train"][0]) and steps["train"][1] == time["train"][1]
    for x in ("step", "time", "tokens"):
        run("plot", "--model", "model.dat", "--x", x, "--out", f"{x}.png")
        assert (trained / f"{x}.png").read_bytes()[:4] == b"\x89PNG"
