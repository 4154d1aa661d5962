"""grow (issue 17): stages and their checkpoints, the training inside being `train`'s, and resumption
after an interruption anywhere (mid-stage, between a save and the checkpoint, between the checkpoint
and the insertion, after the insertion, a Ctrl-C on a real process) ending with the same weights,
bitwise, as a growth run in one go; bad input as one line before any work."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from femtogpt.config import Hyperparameters
from femtogpt.growth.pipeline import GrowError, GrowPlan, grow, stage_path
from femtogpt.io.checkpoint import create
from femtogpt.io.logs import INSERT_LAYER
from femtogpt.io.model_file import load_model_file
from femtogpt.tasks.toy_data import generate_text
from femtogpt.text.build import build_tokenizer
from femtogpt.train.progress import SilentDisplay
from tests.run_cli import run

SETTINGS = {"batch_size": 2, "warmup": 0, "lr": 3e-3, "dropout": 0.1}  # dropout: its masks must resume too
FLAGS = ["--batch-size", 2, "--warmup", 0, "--lr", 3e-3, "--dropout", 0.1]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.txt").write_text(generate_text("simple_dummy", 1500, seed=1))
    hp = Hyperparameters(vocab_size=101, num_tokens=8, embedding_degree=16, num_layers=1, num_heads=2)
    create(hp, build_tokenizer("ascii"), seed=5).save(tmp_path / "model.dat")
    (tmp_path / "start.dat").write_bytes((tmp_path / "model.dat").read_bytes())
    return tmp_path


def tensors(path):
    return {name: bytes(np.ascontiguousarray(a)) for name, a in load_model_file(path).tensors.items()}


def step_of(path):
    opt = load_model_file(path).optimizer
    return opt["step"] if opt else 0


def fresh(workdir, name):
    """A copy of the starting model under another name (its own stage checkpoints)."""
    shutil.copy(workdir / "start.dat", workdir / name)
    return workdir / name


def grow_to_3(path, **kw):
    return grow(path, "d.txt", 3, 4, settings=SETTINGS, save_every=2, **kw)  # 4 steps at 1, 2 and 3 layers


# ------------------------------------------------------------------------------------ stages

def test_stages_write_numbered_checkpoints_and_insert_layers(workdir):
    result = grow_to_3(workdir / "model.dat", insert_at="mid")
    assert not result.stopped and result.failure is None and result.steps == 12
    assert [s.layers for s in result.stages] == [1, 2, 3]
    for L, end in ((1, 4), (2, 8), (3, 12)):
        mf = load_model_file(stage_path(workdir / "model.dat", L))
        assert mf.hp.num_layers == L and mf.optimizer["step"] == end
    assert tensors("model.dat") == tensors("model.l3.dat") and load_model_file("model.dat").hp.num_layers == 3
    inserts = [log for log in load_model_file("model.dat").logs if log["kind"] == INSERT_LAYER]
    assert [(log["index"], log["init"]) for log in inserts] == [(0, "near-identity"), (1, "near-identity")]
    assert stage_path("runs/m.dat", 4).as_posix() == "runs/m.l4.dat" and stage_path("m", 2).name == "m.l2.dat"


def test_the_first_stage_is_exactly_femtogpt_train(workdir):
    grow(workdir / "model.dat", "d.txt", 2, 3, settings=SETTINGS)
    fresh(workdir, "trained.dat")
    run("train", "--model", "trained.dat", "--dataset", "d.txt", "--steps", 3, *FLAGS, "--seed", 5, "--quiet")
    assert tensors("trained.dat") == tensors("model.l1.dat")


# ------------------------------------------------------------------------------------ resumption

def interrupted_at(when):
    """run_growth callbacks that raise KeyboardInterrupt at one moment of the growth (once)."""
    fired = []

    def fire(now):
        if now and not fired:
            fired.append(True)
            raise KeyboardInterrupt

    class Display(SilentDisplay):
        def step(self, step, loss, lr, seconds):
            fire(when == ("step", step))

    def save(ckpt, path):
        ckpt.save(path)
        fire(when == ("saved", ckpt.hp.num_layers, ckpt.step))

    return dict(display=lambda layers, steps, start: Display(), save=save,
                on_stage=lambda stage: fire(when == ("checkpoint", stage.layers)))


@pytest.mark.parametrize("when, layers, step", [
    (("step", 7), 2, 6),           # mid-stage at 2 layers: step 7 is lost, M holds step 6
    (("saved", 1, 4), 1, 4),       # the stage's end saved in M, its checkpoint not yet written
    (("checkpoint", 1), 1, 4),     # between the checkpoint and the insertion
    (("saved", 2, 4), 2, 4),       # the insertion saved, no step of the next stage yet
    (("step", 11), 3, 10),         # mid-stage at the last depth
], ids=["mid-stage", "before-checkpoint", "before-insertion", "after-insertion", "last-stage"])
def test_an_interrupted_growth_resumed_ends_with_the_same_weights(workdir, when, layers, step):
    grow_to_3(workdir / "model.dat")
    path = fresh(workdir, "cut.dat")
    with pytest.raises(KeyboardInterrupt):
        grow_to_3(path, **interrupted_at(when))
    assert (load_model_file(path).hp.num_layers, step_of(path)) == (layers, step)
    result = grow_to_3(path)
    assert result.failure is None and not result.stopped
    for L in (1, 2, 3):
        assert tensors(f"cut.l{L}.dat") == tensors(f"model.l{L}.dat"), L
    assert tensors("cut.dat") == tensors("model.dat") and step_of("cut.dat") == 12


def test_a_stop_request_saves_and_a_rerun_continues_to_the_same_weights(workdir):
    grow_to_3(workdir / "model.dat")
    path = fresh(workdir, "stop.dat")
    stop = []

    class Display(SilentDisplay):
        def step(self, step, loss, lr, seconds):
            if step == 6:
                stop.append(True)  # a first Ctrl-C: finish this step, save, stop

    result = grow_to_3(path, display=lambda *a: Display(), should_stop=lambda: bool(stop))
    assert result.stopped and step_of(path) == 6 and load_model_file(path).hp.num_layers == 2
    result = grow_to_3(path)
    assert not result.stopped and [s.layers for s in result.stages] == [2, 3]
    assert tensors("stop.dat") == tensors("model.dat")


def test_a_finished_growth_is_extended_as_if_grown_in_one_go(workdir):
    grow(workdir / "model.dat", "d.txt", 3, 2, settings=SETTINGS)
    path = fresh(workdir, "ext.dat")
    grow(path, "d.txt", 2, 2, settings=SETTINGS)
    result = grow(path, "d.txt", 3, 2)  # the settings and the seed come from the file
    assert [s.layers for s in result.stages] == [3] and tensors("ext.dat") == tensors("model.dat")
    again = grow(path, "d.txt", 3, 2)
    assert again.steps == 0 and again.stages == [] and tensors("ext.dat") == tensors("model.dat")


def test_a_half_done_growth_refuses_another_schedule_until_restart(workdir):
    path = workdir / "model.dat"
    with pytest.raises(KeyboardInterrupt):
        grow_to_3(path, **interrupted_at(("checkpoint", 1)))
    with pytest.raises(GrowError, match="in the middle of a growth .*--steps-per-stage 4.*--restart"):
        grow(path, "d.txt", 3, 5, settings=SETTINGS)
    with pytest.raises(GrowError, match="already exists"):
        grow(path, "d.txt", 3, 5, settings=SETTINGS, restart=True)  # model.l1.dat is the old growth's
    result = grow(path, "d.txt", 2, 5, settings=SETTINGS, restart=True, force=True)
    assert result.plan.start_step == 4 and step_of(path) == 14


def test_a_malformed_growth_record_is_one_line():
    bad = {"start_step": 0, "start_layers": 1, "to_layers": 3, "steps_per_stage": 0, "insert_at": "end",
           "init": "near-identity", "seed": 1}
    with pytest.raises(GrowError, match=r"m.dat: its growth record .* steps_per_stage 0"):
        GrowPlan.from_dict(bad, "m.dat")
    with pytest.raises(GrowError, match="insert_at 'top'"):
        GrowPlan.from_dict({**bad, "steps_per_stage": 2, "insert_at": "top"}, "m.dat")


# ------------------------------------------------------------------------------------ the command

def test_grow_prints_a_line_per_stage_and_a_table(workdir):
    out = run("grow", "--dataset", "d.txt", "--to-layers", 3, "--steps-per-stage", 2, *FLAGS, "--quiet").output
    lines = out.splitlines()
    assert lines[0].startswith("Growing model.dat from 1 to 3 layers, 2 steps per depth from step 0")
    stage_lines = [line for line in lines if line.startswith("L")]
    assert [line.split(":")[0] for line in stage_lines] == ["L1", "L2", "L3"]
    assert "steps 3-4, loss " in stage_lines[1] and stage_lines[1].endswith(
        "wrote model.l2.dat; next: a near-identity layer at index 2")
    table = lines[lines.index(next(line for line in lines if line.lstrip().startswith("layers"))) + 1:]
    assert [row.split()[0] for row in table[:3]] == ["1", "2", "3"] and table[2].split()[-1] == "model.l3.dat"
    assert lines[-1].startswith("Grown: model.dat has 3 layers")
    assert "nothing to do" in run("grow", "--dataset", "d.txt", "--to-layers", 3, "--steps-per-stage", 2).output


@pytest.mark.parametrize("args, message", [
    (["--to-layers", 1, "--steps-per-stage", 2], "Error: --to-layers 1: model.dat has 1 layer; grow to more than 1"),
    (["--to-layers", 3, "--steps-per-stage", 0], "Error: Invalid value for '--steps-per-stage'"),
    (["--to-layers", 3, "--steps-per-stage", 2, "--dataset", "missing.txt"],
     "Error: --dataset missing.txt: no such file or directory"),
    (["--to-layers", 3, "--steps-per-stage", 2, "--model", "none.dat"], "Error: none.dat"),
    (["--to-layers", 3, "--steps-per-stage", 2, "--batch-size", 10**12], "needs"),
])
def test_bad_input_is_one_line_before_any_work(workdir, args, message):
    before = sorted(os.listdir(workdir))
    result = run("grow", "--dataset", "d.txt", *args, ok=False)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code in (1, 2) and len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output and sorted(os.listdir(workdir)) == before


def test_a_dataset_shorter_than_the_context_is_one_line_and_changes_nothing(workdir):
    (workdir / "short.txt").write_text("abc")
    before = (workdir / "model.dat").read_bytes()
    result = run("grow", "--dataset", "short.txt", "--to-layers", 2, "--steps-per-stage", 1, ok=False)
    assert result.exit_code == 1 and result.output.strip() == \
        "Error: the dataset has 3 tokens; training needs at least num_tokens + 1 = 9"
    assert (workdir / "model.dat").read_bytes() == before and not (workdir / "model.l1.dat").exists()


def test_a_checkpoint_name_already_taken_is_refused_without_force(workdir):
    (workdir / "model.l2.dat").write_text("mine")
    result = run("grow", "--dataset", "d.txt", "--to-layers", 2, "--steps-per-stage", 1, ok=False)
    assert result.exit_code == 1 and result.output.strip() == \
        "Error: model.l2.dat already exists; pass --force to overwrite it"
    assert (workdir / "model.l2.dat").read_text() == "mine" and step_of("model.dat") == 0


def test_ctrl_c_in_a_real_process_then_the_same_command_finishes_the_growth(workdir):
    args = [str(a) for a in ("grow", "--dataset", "d.txt", "--to-layers", 2, "--steps-per-stage", 60, *FLAGS,
                             "--save-every", 7)]
    run(*args, "--model", str(fresh(workdir, "whole.dat")))
    proc = subprocess.Popen([sys.executable, "-m", "femtogpt", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not (workdir / "model.l1.dat").exists():  # interrupted at 2 layers, mid-stage
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.001)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130 and "Traceback" not in out, out
    assert "Run the same command to continue the growth." in out.splitlines()[-1], out
    assert 60 <= step_of("model.dat") < 120
    result = run(*args)
    assert "Resuming the growth of model.dat" in result.output
    assert tensors("model.dat") == tensors("whole.dat") and tensors("model.l2.dat") == tensors("whole.l2.dat")
