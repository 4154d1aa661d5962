"""The everyday workflow through the real CLI: init, train (with exact resume), infer, eval, loss,
info, reset-optimizer, and the bad inputs each command must turn into one clear line."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from femtogpt.io.logs import expanded
from femtogpt.io.model_file import load_model_file
from femtogpt.tasks.toy_data import generate_text
from tests.run_cli import run

SMALL = ["--num-tokens", "8", "--embedding-degree", "16", "--num-layers", "1", "--num-heads", "2"]




@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEMTOGPT_CACHE_DIR", str(tmp_path / "cache"))
    Path("dataset.txt").write_text(generate_text("simple_dummy", 400, seed=1) + "\n")
    return tmp_path


def init_model(path="model.dat", *extra):
    return run("init", "--model", path, *SMALL, "--seed", "3", *extra)


def one_line_error(result, *needles):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("Error: "), result.output
    for needle in needles:
        assert needle in lines[-1], result.output
    return lines[-1]


def test_init_creates_model_and_refuses_overwrite(workdir):
    out = init_model().output
    assert "parameters" in out
    mf = load_model_file(Path("model.dat"))
    assert mf.hp.vocab_size == 101 and mf.hp.num_tokens == 8 and mf.hp.pos_enc == "absolute"
    assert mf.logs[0]["kind"] == "Init"
    before = Path("model.dat").read_bytes()
    one_line_error(run("init", *SMALL, ok=False), "model.dat", "--force")
    assert Path("model.dat").read_bytes() == before
    run("init", *SMALL, "--force", "--positional-encoding", "none")
    assert load_model_file(Path("model.dat")).hp.pos_enc == "none"


@pytest.mark.parametrize("args,needle", [
    (["--embedding-degree", "10", "--num-heads", "3"], "--num-heads"),
    (["--num-layers", "0"], "--num-layers"),
    (["--positional-encoding", "alibi"], "--positional-encoding"),
])
def test_init_bad_flags(workdir, args, needle):
    result = run("init", *args, ok=False)
    assert result.exit_code != 0 and needle in result.output and "Traceback" not in result.output
    assert not Path("model.dat").exists()


def tensors_of(path):
    return load_model_file(Path(path)).tensors


def test_train_resume_is_exact(workdir):
    init_model("a.dat")
    Path("b.dat").write_bytes(Path("a.dat").read_bytes())
    common = ["--dataset", "dataset.txt", "--seed", "5", "--batch-size", "4", "--dropout", "0.1"]
    run("train", "--model", "a.dat", "--steps", "10", *common)
    run("train", "--model", "b.dat", "--steps", "5", *common)
    run("train", "--model", "b.dat", "--steps", "5", *common)
    a, b = load_model_file(Path("a.dat")), load_model_file(Path("b.dat"))
    assert a.optimizer["step"] == b.optimizer["step"] == 10
    for name in a.tensors:
        np.testing.assert_array_equal(a.tensors[name], b.tensors[name], err_msg=name)
        np.testing.assert_array_equal(a.optimizer["m"][name], b.optimizer["m"][name], err_msg=name)
    losses_a = [log["loss"] for log in expanded(a.logs) if log["kind"] == "TrainStep"]
    losses_b = [log["loss"] for log in expanded(b.logs) if log["kind"] == "TrainStep"]
    assert losses_a == losses_b and len(losses_a) == 10


def test_train_saves_every_step_count_and_logs(workdir):
    init_model()
    out = run("train", "--steps", "3", "--batch-size", "2", "--save-every", "1").output
    assert "step 3" in out
    mf = load_model_file(Path("model.dat"))
    kinds = [log["kind"] for log in mf.logs]
    assert kinds == ["Init", "TrainSession", "TrainSteps"]  # three steps in one block
    assert [log["step"] for log in expanded(mf.logs)[2:]] == [1, 2, 3]
    session = mf.logs[1]
    assert session["dataset"] == "dataset.txt" and len(session["dataset_hash"]) > 8
    assert mf.optimizer["step"] == 3


def test_train_with_validation(workdir):
    init_model()
    out = run("train", "--steps", "4", "--batch-size", "2", "--val-fraction", "0.2",
              "--eval-every", "2").output
    assert "validation loss" in out
    logs = load_model_file(Path("model.dat")).logs
    evals = [log for log in logs if log["kind"] == "Eval"]
    assert [e["step"] for e in evals] == [2, 4] and all(np.isfinite(e["val_loss"]) for e in evals)
    # a block ends at each validation, so the logs stay in the order of events
    assert [(log["kind"], log.get("step")) for log in expanded(logs)[2:]] == [
        ("TrainStep", 1), ("TrainStep", 2), ("Eval", 2), ("TrainStep", 3), ("TrainStep", 4), ("Eval", 4)]


def test_train_bad_inputs_leave_the_model_untouched(workdir):
    init_model()
    before = Path("model.dat").read_bytes()
    one_line_error(run("train", "--dataset", "missing.txt", ok=False), "missing.txt")
    Path("short.txt").write_text("abc")
    one_line_error(run("train", "--dataset", "short.txt", "--steps", "1", ok=False), "tokens")
    result = run("train", "--steps", "0", ok=False)
    assert result.exit_code == 2 and "--steps" in result.output
    assert Path("model.dat").read_bytes() == before


def test_train_stops_on_nan_and_keeps_good_weights(workdir, monkeypatch):
    init_model()
    import femtogpt.train.loop as trainer
    from femtogpt.train.step import NonFiniteLoss, train_step

    calls = []

    def flaky(model, opt, *args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise NonFiniteLoss(f"the loss became nan at step {opt.step + 1}")
        return train_step(model, opt, *args, **kw)

    monkeypatch.setattr(trainer, "train_step", flaky)
    line = one_line_error(run("train", "--steps", "5", "--batch-size", "2", ok=False), "nan", "model.dat")
    assert "step 2" in line
    mf = load_model_file(Path("model.dat"))
    assert mf.optimizer["step"] == 2
    assert all(np.isfinite(t).all() for t in mf.tensors.values())


def test_ctrl_c_saves_the_last_finished_step(workdir):
    init_model()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "femtogpt", "train", "--steps", "100000",
                             "--batch-size", "2", "--save-every", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen, printed = [], 0
    for line in proc.stdout:  # wait until a few steps are done
        seen.append(line)
        if line.startswith("step "):
            printed = int(line.split()[1])
            if printed >= 3:
                proc.send_signal(signal.SIGINT)
                break
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, "".join(seen) + out
    assert "Saved model.dat" in out
    step = load_model_file(Path("model.dat")).optimizer["step"]
    assert step >= printed >= 3


def test_infer_prints_prompt_and_continuation(workdir):
    init_model()
    run("train", "--steps", "2", "--batch-size", "2")
    out = run("infer", "jak", "--count", "5", "--temperature", "0").output
    assert out.startswith("jak") and len(out.rstrip("\n")) >= 3
    again = run("infer", "jak", "--count", "5", "--temperature", "0").output
    assert out == again  # greedy is deterministic
    s1 = run("infer", "ba", "--count", "8", "--seed", "4").output
    s2 = run("infer", "ba", "--count", "8", "--seed", "4").output
    assert s1 == s2
    run("infer", "", "--count", "3")  # empty prompt
    run("infer", "x" * 50, "--count", "3")  # longer than the context


def test_eval_covers_the_file_once(workdir):
    init_model()
    out = run("eval", "--dataset", "dataset.txt", "--json").output
    data = json.loads(out)
    n_chars = len(Path("dataset.txt").read_text())
    assert data["tokens"] == n_chars - 1  # ascii: one token per character, each predicted once
    assert abs(data["loss"] - np.log(101)) < 0.1
    assert data["perplexity"] == pytest.approx(np.exp(data["loss"]), rel=1e-12)
    assert f"(perplexity {data['perplexity']:.4g})" in run("eval", "--dataset", "dataset.txt").output
    capped = json.loads(run("eval", "--dataset", "dataset.txt", "--json", "--max-windows", 2).output)
    T = load_model_file(Path("model.dat")).hp.num_tokens
    assert capped["tokens"] == 2 * T  # the first two windows of T predicted tokens each


def test_loss_and_info_and_reset_optimizer(workdir):
    init_model()
    run("train", "--steps", "3", "--batch-size", "2")
    lines = run("loss", "--limit", "2").output.split()
    assert len(lines) == 2 and all(np.isfinite(float(x)) for x in lines)
    assert len(run("loss", "--limit", "0").output.split()) == 3  # 0: all, as --limit 0 everywhere
    info = json.loads(run("info", "--json").output)
    assert info["num_params"] == load_model_file(Path("model.dat")).hp.num_params()
    assert info["optimizer_step"] == 3 and info["trained_steps"] == 3
    assert [h["kind"] for h in info["history"]] == ["Init", "TrainSession", "TrainSteps"]
    text = run("info").output
    assert "parameters" in text and "3 steps" in text
    size = Path("model.dat").stat().st_size
    run("reset-optimizer")
    mf = load_model_file(Path("model.dat"))
    assert mf.optimizer is None and mf.logs[-1]["kind"] == "ResetOptimizer"
    assert Path("model.dat").stat().st_size < size / 2


def corrupt_variants(good):
    yield "empty", b""
    yield "not a model", b"hello world, not msgpack at all"
    for cut in (1, 10, len(good) // 3, len(good) // 2, len(good) - 1):
        yield f"truncated at {cut}", good[:cut]
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x10
    yield "bit flip in the middle", bytes(flipped)
    flipped = bytearray(good)
    flipped[40] ^= 0x01
    yield "bit flip near the start", bytes(flipped)


@pytest.mark.parametrize("command", [["info"], ["loss"], ["train", "--steps", "1"],
                                     ["infer", "a", "--count", "1"], ["eval", "--dataset", "dataset.txt"],
                                     ["reset-optimizer"]])
def test_bad_model_files_give_one_line(workdir, command):
    init_model("good.dat")
    good = Path("good.dat").read_bytes()
    one_line_error(run(*command, "--model", "missing.dat", ok=False), "missing.dat")
    for what, data in corrupt_variants(good):
        Path("bad.dat").write_bytes(data)
        one_line_error(run(*command, "--model", "bad.dat", ok=False), "bad.dat")
        assert Path("bad.dat").read_bytes() == data, what  # never "repaired" or overwritten


def test_wrong_version_is_named(workdir):
    import msgpack

    init_model()
    obj = msgpack.unpackb(Path("model.dat").read_bytes())
    obj["version"] = 99
    Path("future.dat").write_bytes(msgpack.packb(obj))
    one_line_error(run("info", "--model", "future.dat", ok=False), "future.dat", "version")


def test_save_failure_keeps_the_old_file(workdir, monkeypatch):
    import errno

    init_model()
    before = Path("model.dat").read_bytes()

    def no_space(*args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    real_replace = os.replace
    monkeypatch.setattr(os, "replace", no_space)
    one_line_error(run("train", "--steps", "1", "--batch-size", "2", ok=False), "model.dat")
    monkeypatch.setattr(os, "replace", real_replace)
    assert Path("model.dat").read_bytes() == before
    assert sorted(p.name for p in Path(".").iterdir() if p.name.startswith("model")) == ["model.dat"]


def test_dummy_data_command(workdir):
    out = run("dummy-data", "simple_sequence", "--size", "5").output
    assert out == "a@@b##c$$d%%e^^"  # the reference prints no trailing newline here
    run("dummy-data", "simple_dummy", "--seed", "1", "--size", "3", "--out", "w.txt")
    assert Path("w.txt").read_text().count(";\n") == 3


def test_demo_runs_end_to_end(workdir):
    out = run("demo", "--seconds", "3", "--dir", "d").output
    assert "Trained" in out and "Samples" in out
    mf = load_model_file(Path("d/model.dat"))
    assert mf.optimizer["step"] > 0 and Path("d/dataset.txt").stat().st_size > 10_000


def test_train_on_a_directory_and_with_reset_optimizer(workdir):
    init_model()
    Path("texts").mkdir()
    Path("texts/a.txt").write_text(generate_text("simple_dummy", 100, seed=2))
    Path("texts/b.txt").write_text(generate_text("simple_dummy", 100, seed=3))
    run("train", "--dataset", "texts", "--steps", "2", "--batch-size", "2")
    run("train", "--dataset", "texts", "--steps", "1", "--batch-size", "2", "--reset-optimizer")
    mf = load_model_file(Path("model.dat"))
    assert mf.optimizer["step"] == 1  # warm-up restarted
    assert [log["kind"] for log in mf.logs].count("ResetOptimizer") == 1
    assert mf.logs[-2]["kind"] == "TrainSession" and mf.logs[-2]["dataset"] == "texts"


def test_tokenizer_data_with_a_kind_that_ignores_it_is_an_error(workdir):
    Path("bpe.json").write_text('["a", "b", "ab"]')
    for kind in ("ascii", "byte"):
        result = run("init", "--model", "x.dat", "--tokenizer", kind, "--tokenizer-data", "bpe.json", ok=False)
        assert result.exit_code == 1 and "--tokenizer-data is read only by --tokenizer char or bpe" in result.output
    assert not Path("x.dat").exists()


def test_init_bpe_without_data_says_which_tokenizer_it_used(workdir):
    result = run("init", "--model", "x.dat", "--tokenizer", "bpe", "--embedding-degree", 8, "--num-layers", 1,
                 "--num-heads", 2, "--num-tokens", 8)
    assert "packaged default tokenizer" in result.output and "was not read" not in result.output
    Path("tokenizer.json").write_text(Path(__file__).resolve().parents[1].joinpath("tokenizer.json").read_text())
    result = run("init", "--model", "y.dat", "--tokenizer", "bpe", "--embedding-degree", 8, "--num-layers", 1,
                 "--num-heads", 2, "--num-tokens", 8)
    assert "./tokenizer.json here was not read" in result.output
