"""A run remembers how it was trained (issue 15): the settings are stored in the model file, a bare
`femtogpt train` resumes with them bitwise, a flag given overrides and is stored; the optimizer knobs
(weight decay, betas, eps, clipping, cosine schedule, gradient accumulation) do what they say."""
import math

import numpy as np
import pytest

from femtogpt.config import TRAINING_SETTINGS, Hyperparameters, OptimizerConfig
from femtogpt.engine.optim import AdamW
from femtogpt.engine.params import Parameters
from femtogpt.io.model_file import load_model_file
from femtogpt.model.gpt import GPT
from femtogpt.tasks.toy_data import generate_text
from femtogpt.train.step import train_step
from tests.hostile_files import crafted, small_model
from tests.run_cli import run

SETTINGS = ["--lr", "3e-4", "--min-lr", "1e-4", "--warmup", "3", "--decay-steps", "10", "--schedule", "cosine",
            "--weight-decay", "0.1", "--beta1", "0.8", "--beta2", "0.99", "--eps", "1e-6", "--grad-clip", "0.5",
            "--batch-size", "4", "--units", "3", "--dropout", "0.1"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dataset.txt").write_text(generate_text("simple_dummy", 2000, seed=1))
    run("init", "--num-tokens", 16, "--embedding-degree", 16, "--num-layers", 2, "--num-heads", 2, "--seed", 5)
    (tmp_path / "fresh.dat").write_bytes((tmp_path / "model.dat").read_bytes())
    return tmp_path


def weights(path):
    mf = load_model_file(path)
    return mf, np.concatenate([v.ravel() for v in mf.tensors.values()] +
                              [v.ravel() for m in "mv" for v in mf.optimizer[m].values()])


def test_a_bare_train_resumes_with_the_stored_settings_bitwise(workdir):
    run("train", "--model", "fresh.dat", "--steps", 10, "--quiet", *SETTINGS)
    run("train", "--steps", 5, "--quiet", *SETTINGS)
    resumed = run("train", "--steps", 5, "--quiet")  # no flags at all
    assert resumed.output.startswith("Resuming with the settings stored in model.dat: --lr 0.0003 --min-lr 0.0001 "
                                     "--warmup 3 --decay-steps 10 --schedule cosine --weight-decay 0.1 --beta1 0.8 "
                                     "--beta2 0.99 --eps 1e-06 --grad-clip 0.5 --batch-size 4 --units 3 "
                                     "--dropout 0.1\n"), resumed.output
    (one, a), (two, b) = weights(workdir / "fresh.dat"), weights(workdir / "model.dat")
    assert one.optimizer["step"] == two.optimizer["step"] == 10
    np.testing.assert_array_equal(a, b)
    stored = two.train_state["settings"]
    assert stored["lr"] == 3e-4 and stored["schedule"] == "cosine" and stored["units"] == 3
    assert set(stored) == set(TRAINING_SETTINGS)


def test_a_flag_given_on_resume_wins_and_is_stored_for_the_next_run(workdir):
    run("train", "--steps", 2, "--quiet", "--lr", "3e-4", "--batch-size", 4)
    out = run("train", "--steps", 2, "--quiet", "--lr", "2e-4").output.splitlines()
    assert out[:2] == ["Changed from the settings stored in the model file: --lr 0.0003 -> 0.0002",
                       "Resuming with the settings stored in model.dat: --batch-size 4"]
    stored = load_model_file(workdir / "model.dat").train_state["settings"]
    assert stored["lr"] == 2e-4 and stored["batch_size"] == 4
    out = run("train", "--steps", 1, "--quiet").output
    assert "--lr 0.0002 --batch-size 4" in out.splitlines()[0]


def test_a_first_run_says_nothing_about_stored_settings_and_stores_the_defaults(workdir):
    out = run("train", "--steps", 1, "--quiet", "--batch-size", 2).output
    assert not out.startswith("Resuming")
    stored = load_model_file(workdir / "model.dat").train_state["settings"]
    assert stored == {**{k: default for k, (default, _) in TRAINING_SETTINGS.items()}, "batch_size": 2}


def test_grad_accum_4_at_batch_8_is_batch_32_bitwise(workdir):
    # the micro-batches are the big batch's pieces: 4 x (8 windows in 2 units) = 32 windows in 8 units,
    # added in the same order (a batch of 32 in the default 2 units adds 16-window pieces instead)
    run("train", "--model", "fresh.dat", "--steps", 3, "--quiet", "--batch-size", 32, "--units", 8)
    run("train", "--steps", 3, "--quiet", "--batch-size", 8, "--grad-accum", 4)
    np.testing.assert_array_equal(weights(workdir / "fresh.dat")[1], weights(workdir / "model.dat")[1])


def test_a_config_file_sets_options_and_flags_override_it(workdir):
    (workdir / "run.toml").write_text('model = "fresh.dat"\nsteps = 4\nlr = 3e-4\nbatch-size = 4\n'
                                      'schedule = "constant"\nquiet = true\n')
    run("train", "--config", "run.toml", "--batch-size", 3)
    mf = load_model_file(workdir / "fresh.dat")
    assert mf.optimizer["step"] == 4 and (workdir / "model.dat").read_bytes() != b""
    assert {k: mf.train_state["settings"][k] for k in ("lr", "batch_size", "schedule")} == {
        "lr": 3e-4, "batch_size": 3, "schedule": "constant"}
    (workdir / "bad.toml").write_text("bogus = 1\n")
    result = run("train", "--config", "bad.toml", ok=False)
    assert result.exit_code == 2 and "'bogus' is not an option of train" in result.output
    (workdir / "bad.toml").write_text("lr = \n")
    assert "bad.toml is not valid TOML" in run("train", "--config", "bad.toml", ok=False).output
    (workdir / "bad.toml").write_text("lr = nan\n")
    assert "is not a finite number" in run("train", "--config", "bad.toml", ok=False).output


def test_a_changed_setting_is_one_line_and_info_shows_the_stored_settings(workdir):
    run("train", "--steps", 1, "--quiet", "--lr", "3e-4", "--units", 3)
    out = run("train", "--steps", 1, "--quiet", "--lr", "2e-4", "--units", 3).output
    assert out.splitlines()[0] == "Changed from the settings stored in the model file: --lr 0.0003 -> 0.0002"
    info = run("info").output
    assert "  training settings (a bare train resumes with them): seed 5, --lr 0.0002 --units 3, the rest default" \
        in info.splitlines()


@pytest.mark.parametrize("settings, expected", [
    ({"beta2": 1.5}, "train_state.settings.beta2 is 1.5, expected a number in [0, 1)"),
    ({"units": 0}, "train_state.settings.units is 0, expected an integer in 1..64"),
    ({"schedule": "exp"}, "train_state.settings.schedule is 'exp', expected one of linear, cosine"),
    ({"lr": float("nan")}, "train_state.settings.lr is nan"),
    ({"batch_size": True}, "train_state.settings.batch_size is True"),
])
def test_a_bad_stored_setting_is_one_line(tmp_path, settings, expected):
    path = crafted(tmp_path / "s.dat", small_model(tmp_path / "base.dat"),
                   lambda e: e["train_state"].update(settings=settings))
    result = run("info", "--model", path, ok=False)
    assert result.exit_code == 1 and result.output.count("\n") == 1 and expected in result.output, result.output


def test_settings_a_newer_version_stored_are_kept_and_ignored(tmp_path):
    path = crafted(tmp_path / "s.dat", small_model(tmp_path / "base.dat"),
                   lambda e: e["train_state"].update(settings={"lr": 2e-4, "from_the_future": [1]}))
    assert load_model_file(path).train_state["settings"] == {"lr": 2e-4, "from_the_future": [1]}


def test_cosine_schedule_and_warm_up():
    c = OptimizerConfig(lr=1e-3, min_lr=1e-4, warmup=10, decay_steps=100, schedule="cosine")
    assert c.learning_rate(0) == 0 and c.learning_rate(5) == pytest.approx(5e-4)
    assert c.learning_rate(10) == pytest.approx(1e-3) and c.learning_rate(60) == pytest.approx(5.5e-4)
    assert c.learning_rate(110) == pytest.approx(1e-4) and c.learning_rate(10_000) == pytest.approx(1e-4)
    assert OptimizerConfig(lr=1e-3, warmup=10, schedule="constant").learning_rate(10**6) == 1e-3
    linear = OptimizerConfig(lr=1e-3, min_lr=1e-4, warmup=10, decay_steps=100)
    assert linear.learning_rate(60) == pytest.approx(5.5e-4) and linear.learning_rate(35) < c.learning_rate(35)  # cosine starts slower


def test_grad_clip_scales_the_update_to_the_clipped_gradient():
    hp = Hyperparameters(vocab_size=11, num_tokens=4, embedding_degree=8, num_layers=1, num_heads=2)
    rng = np.random.default_rng(0)
    ids, targets = rng.integers(0, 11, (3, 4)), rng.integers(0, 11, (3, 4))
    norms = {}
    for clip in (0.0, 1e-3):
        model = GPT(hp, Parameters(hp, np.float64).init_reference(1))
        opt = AdamW(model.params, OptimizerConfig(grad_clip=clip, warmup=0))
        train_step(model, opt, ids, targets)
        norms[clip] = math.sqrt(float(np.dot(model.params.grad, model.params.grad)))
    assert norms[0.0] > 1e-3 and norms[1e-3] == pytest.approx(1e-3, rel=1e-12)


def test_a_run_with_many_more_threads_than_units_is_told_how_to_use_them():
    from femtogpt.train.settings import units_note

    note = units_note(16, 2)
    assert note.startswith("Note: 16 threads for 2 work units") and "--units 16" in note
    assert units_note(4, 2) is None and units_note(2, 2) is None and units_note(1, 5) is None
    assert units_note(16, 8) is None  # two threads a unit: its products are cut in two
    assert "--units 9" in units_note(9, 4)
