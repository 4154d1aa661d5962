"""When training saves: by steps, by minutes, and the --keep-best file."""
import math
import time

import pytest

from femtogpt.train import loop as trainer
from femtogpt.config import Hyperparameters, OptimizerConfig
from femtogpt.tasks.toy_data import generate_text
from femtogpt.io.checkpoint import create, load
from femtogpt.text.build import build_tokenizer
from femtogpt.train.loop import TrainOptions, run_training
from tests.run_cli import run


class _Quiet:
    def step(self, *a): pass
    def validation(self, *a): pass
    def close(self): pass


def small_session():
    hp = Hyperparameters(vocab_size=101, num_tokens=8, embedding_degree=8, num_layers=1, num_heads=2)
    session = create(hp, build_tokenizer("ascii"), seed=1)
    session.ensure_optimizer(OptimizerConfig(lr=1e-2, warmup=0))
    return session, session.tokenizer.encode(generate_text("simple_dummy", 200, seed=1))


def test_saves_by_minutes_as_well_as_by_steps(monkeypatch):
    session, tokens = small_session()
    clock = [0.0]  # each step takes 25 s on this clock, however often the trainer reads it
    real_step = trainer.train_step

    def slow_step(*args, **kw):
        clock[0] += 25.0
        return real_step(*args, **kw)

    class FakeTime:
        monotonic = staticmethod(lambda: clock[0])
        perf_counter = staticmethod(time.perf_counter)

    monkeypatch.setattr(trainer, "train_step", slow_step)
    monkeypatch.setattr(trainer, "time", FakeTime)
    saves = []
    run_training(session, tokens, TrainOptions(steps=10, seed=0, batch_size=2, save_every=0, save_minutes=1),
                 lambda: saves.append(session.step), _Quiet())
    # a save once a minute has passed since the last one (steps 3, 6, 9: 75 s each), then the final one
    assert saves == [3, 6, 9, 10]


def test_best_is_saved_at_each_new_lowest_validation_loss():
    session, tokens = small_session()
    best = []
    result = run_training(session, tokens, TrainOptions(steps=12, seed=0, batch_size=2, val_fraction=0.2,
                                                        eval_every=3), lambda: None, _Quiet(),
                          save_best=lambda: best.append(session.logs[-1]["val_loss"]))
    vals = [log["val_loss"] for log in session.logs if log["kind"] == "Eval"]
    assert len(vals) == 4
    running = [v for i, v in enumerate(vals) if v < min(vals[:i], default=math.inf)]
    assert best == running and result.best_loss == min(vals)


@pytest.fixture
def model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.txt").write_text(generate_text("simple_dummy", 300, seed=1))
    (tmp_path / "other.txt").write_text(generate_text("simple_dummy", 300, seed=2))
    run("init", "--num-tokens", 8, "--embedding-degree", 8, "--num-layers", 1, "--num-heads", 2, "--seed", 1)
    return tmp_path


def best_val(path):
    return [log for log in load(path).logs if log["kind"] == "Eval"][-1]["val_loss"]


def test_keep_best_cli(model):
    common = ["--dataset", "d.txt", "--batch-size", 4, "--val-fraction", 0.2, "--eval-every", 10, "--keep-best"]
    out = run("train", "--steps", 40, *common).output
    best_file = model / "model.best.dat"
    vals = [log["val_loss"] for log in load(model / "model.dat").logs if log["kind"] == "Eval"]
    assert best_val(best_file) == min(vals)
    assert f"Best validation loss {min(vals):.4f}" in out and "saved in model.best.dat" in out
    # a run that only gets worse (a huge learning rate) leaves the best file alone
    before = best_file.read_bytes()
    out = run("train", "--steps", 20, "--lr", 5.0, "--warmup", 0, *common).output
    assert "Best validation loss" not in out and f"below model.best.dat's {min(vals):.4f}" in out
    assert best_file.read_bytes() == before
    # other validation data: the old best says nothing about it, so the first eval is a new best
    out = run("train", "--steps", 10, *[("other.txt" if a == "d.txt" else a) for a in common]).output
    assert "saved in model.best.dat" in out
    sessions = [log for log in load(best_file).logs if log["kind"] == "TrainSession"]
    assert sessions[-1]["dataset"] == "other.txt" and sessions[-1]["val_fraction"] == 0.2


def test_keep_best_needs_validation(model):
    r = run("train", "--dataset", "d.txt", "--steps", 2, "--keep-best", ok=False)
    assert r.exit_code != 0 and r.output.strip().splitlines() == [
        "Error: --keep-best needs --val-fraction: the best model is the one with the lowest validation loss"]
    assert not (model / "model.best.dat").exists()


class _Messages(_Quiet):
    def __init__(self):
        self.messages = []

    def message(self, text):
        self.messages.append(text)


def test_samples_print_on_schedule_without_changing_training():
    runs = []
    for sample_every in (0, 4):
        session, tokens = small_session()
        display = _Messages()
        run_training(session, tokens, TrainOptions(steps=8, seed=3, batch_size=2, sample_every=sample_every,
                                                   sample_len=12), lambda: None, display)
        runs.append((session.model.params.data.copy(), display.messages))
    assert (runs[0][0] == runs[1][0]).all()  # sampling draws from its own stream
    assert runs[0][1] == [] and [m.splitlines()[0] for m in runs[1][1]] == [
        "--- sample at step 4 ---", "--- sample at step 8 ---"]
    again = _Messages()
    session, tokens = small_session()
    run_training(session, tokens, TrainOptions(steps=8, seed=3, batch_size=2, sample_every=4, sample_len=12),
                 lambda: None, again)
    assert again.messages == runs[1][1]  # seeded by (seed, step)


def test_quiet_train_and_prompt_file(model):
    out = run("train", "--dataset", "d.txt", "--steps", 3, "--batch-size", 2, "--quiet").output
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Model model.dat") and lines[1].startswith("Saved model.dat at step 3")
    (model / "p.txt").write_text("ba")
    from_file = run("infer", "--prompt-file", "p.txt", "--count", 10, "--seed", 4).output
    assert from_file == run("infer", "ba", "--count", 10, "--seed", 4).output
    r = run("infer", "ba", "--prompt-file", "p.txt", ok=False)
    assert r.exit_code != 0 and r.output.strip() == "Error: give either PROMPT or --prompt-file, not both"


def test_keep_best_refuses_another_models_best_file_and_survives_a_failing_save(model, monkeypatch):
    common = ["--dataset", "d.txt", "--batch-size", 4, "--val-fraction", 0.2, "--eval-every", 5, "--keep-best"]
    run("train", "--steps", 5, *common)
    run("init", "--num-tokens", 8, "--embedding-degree", 8, "--num-layers", 1, "--num-heads", 2, "--seed", 2,
        "--force")
    before = (model / "model.best.dat").read_bytes()
    r = run("train", "--steps", 5, *common, ok=False)
    assert r.exit_code != 0 and r.output.strip().splitlines()[-1].startswith(
        "Error: model.best.dat is the best file of another model")
    assert (model / "model.best.dat").read_bytes() == before
    (model / "model.best.dat").unlink()
    # the best file cannot be written (a full disk, say): warn, train on, and still save the model
    from femtogpt.io.checkpoint import Checkpoint
    from femtogpt.io.model_file import ModelFileError

    real_save = Checkpoint.save

    def failing(ckpt, path):
        if str(path).endswith("model.best.dat"):
            raise ModelFileError(f"{path}: cannot save: no space left on device; nothing was written")
        real_save(ckpt, path)

    monkeypatch.setattr(Checkpoint, "save", failing)
    r = run("train", "--steps", 10, *common)
    assert "warning: model.best.dat: cannot save: no space left on device" in r.output
    assert "training goes on" in r.output and "Saved model.dat at step 10" in r.output
    assert "saved in model.best.dat" not in r.output
    assert load(model / "model.dat").step == 10 and not (model / "model.best.dat").exists()


def test_export_refuses_to_overwrite_its_own_model(model):
    before = (model / "model.dat").read_bytes()
    r = run("export", "--out", "model.dat", "--format", "npz", "--force", ok=False)
    assert r.exit_code != 0 and r.output.strip() == "Error: --out model.dat is the model file itself; choose another name"
    assert (model / "model.dat").read_bytes() == before


def test_batch_offset_keys_batches_by_the_steps_of_this_run(monkeypatch):
    # the experiments' arms (optimizer kept or reset) must see the same data: with batch_offset the
    # batches are keyed by (seed, batch_offset + i), whatever the optimizer step is
    keys = []
    real = trainer.sample_batch
    monkeypatch.setattr(trainer, "sample_batch", lambda *a: keys.append(a[-1]) or real(*a))
    session, tokens = small_session()
    run_training(session, tokens, TrainOptions(steps=3, seed=0, batch_size=2, save_every=0), lambda: None, _Quiet())
    run_training(session, tokens, TrainOptions(steps=3, seed=0, batch_size=2, save_every=0, batch_offset=1000),
                 lambda: None, _Quiet())
    assert keys == [0, 1, 2, 1000, 1001, 1002] and session.step == 6


# ---------------------------------------------------------------- issue 13: saves that stop half-way

def test_no_step_no_save_and_no_second_save_of_the_same_step():
    # stopped before the first step: nothing is saved (the file stays as it was)
    session, tokens = small_session()
    saves = []
    result = run_training(session, tokens, TrainOptions(steps=5, seed=0, batch_size=2), lambda: saves.append(1),
                          _Quiet(), should_stop=lambda: True)
    assert result.stopped and result.steps == 0 and saves == [] and result.saved_step is None
    # stopped just after a periodic save: that save holds the last step, no second one
    session, tokens = small_session()
    saves = []
    result = run_training(session, tokens, TrainOptions(steps=10, seed=0, batch_size=2, save_every=3),
                          lambda: saves.append(session.step), _Quiet(), should_stop=lambda: session.step >= 3)
    assert result.stopped and saves == [3] and result.saved_step == 3 and result.steps == 3


def test_twenty_kill_9s_during_saves_never_damage_the_file(tmp_path, monkeypatch):
    # a real training process saving after every step, killed (SIGKILL) at random moments while a save
    # is being written; the file always loads, and the next run removes the temp files the kills left
    import os
    import random
    import re
    import signal
    import subprocess
    import sys

    from femtogpt.io.model_file import load_model_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.txt").write_text(generate_text("simple_dummy", 2000, seed=1))
    run("init", "--num-tokens", 8, "--embedding-degree", 128, "--num-layers", 4, "--num-heads", 4, "--seed", 1)
    is_temp = re.compile(r"\.model\.dat\.[0-9a-f]{8}\.tmp").fullmatch
    temps = lambda: {p for p in os.listdir(tmp_path) if is_temp(p)}  # noqa: E731
    rng, step, mid_save = random.Random(13), 0, 0
    for _ in range(20):
        stale = temps()
        proc = subprocess.Popen([sys.executable, "-m", "femtogpt", "train", "--dataset", "d.txt", "--batch-size", "1",
                                 "--save-every", "1", "--steps", "100000", "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not temps() - stale:  # wait for a save of this run to be on its way
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.0002)
        time.sleep(rng.uniform(0.0, 0.15))  # within this save or one of the next few
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        mid_save += bool(temps() - stale)
        saved = load_model_file(tmp_path / "model.dat").optimizer  # always a whole file
        assert (saved["step"] if saved else 0) >= step
        step = saved["step"] if saved else 0
    assert mid_save >= 5 and step > 0  # many kills landed in the middle of writing a save, some saves completed
    run("train", "--dataset", "d.txt", "--batch-size", 1, "--steps", 1, "--quiet")  # the next run
    assert temps() == set() and sorted(p.name for p in tmp_path.iterdir()) == ["d.txt", "model.dat"]
    assert load_model_file(tmp_path / "model.dat").optimizer["step"] == step + 1
