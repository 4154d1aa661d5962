"""Training on several processes (issue 14): `mpiexec -n K femtogpt train` gives the bits of one process,
whatever K; processes that see different datasets stop with one line; a killed process or a Ctrl-C
leaves a file that loads, at its last saved step. Real `mpiexec` (the MPICH wheel of the test extra)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from femtogpt.io.model_file import load_model_file
from femtogpt.tasks.toy_data import generate_text
from tests.run_cli import run

MPIEXEC = str(Path(sys.executable).parent / "mpiexec")
FEMTOGPT = [sys.executable, "-m", "femtogpt"]
TRAIN = ["train", "--dataset", "d.txt", "--steps", "10", "--batch-size", "7", "--units", "3", "--dropout", "0.1",
         "--seed", "3", "--quiet", "--save-every", "4"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.txt").write_text(generate_text("simple_dummy", 3000, seed=1))
    run("init", "--num-tokens", 16, "--embedding-degree", 32, "--num-layers", 2, "--num-heads", 4, "--seed", 7)
    return tmp_path


def mpiexec(n, *args, **kw):
    return subprocess.run([MPIEXEC, "-n", str(n), *FEMTOGPT, *map(str, args)], capture_output=True, text=True,
                          timeout=120, **kw)


def state(path):
    """Every weight and both AdamW moments, and the optimizer step."""
    mf = load_model_file(path)
    arrays = {f"w.{k}": v for k, v in mf.tensors.items()}
    arrays.update({f"{m}.{k}": v for m in "mv" for k, v in mf.optimizer[m].items()})
    return arrays, mf.optimizer["step"]


def assert_same_state(a, b):
    (xa, sa), (xb, sb) = state(a), state(b)
    assert sa == sb and xa.keys() == xb.keys()
    for k in xa:
        np.testing.assert_array_equal(xa[k], xb[k], err_msg=k)


def test_any_number_of_processes_gives_the_bits_of_one(workdir):
    for name in ("one.dat", "two.dat", "three.dat", "four.dat"):
        (workdir / name).write_bytes((workdir / "model.dat").read_bytes())
    run(*TRAIN, "--model", "one.dat", "--threads", 1)
    # 7 sequences in 3 units (2, 2, 3): 2 processes take 2 + 1 units, 3 take one each, and with 4 one
    # process has none (it only passes the running sum on)
    for n, name in ((2, "two.dat"), (3, "three.dat"), (4, "four.dat")):
        out = mpiexec(n, *TRAIN, "--model", name, "--threads", 1)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.count("Saved ") == 1 and f"each of {n} processes" in out.stdout, out.stdout
        assert_same_state(workdir / "one.dat", workdir / name)
    logs = load_model_file(workdir / "three.dat").logs
    session = [log for log in logs if log["kind"] == "TrainSession"][-1]
    assert session["units"] == 3 and session["processes"] == 3


def test_processes_that_see_different_datasets_stop_with_one_line(workdir):
    (workdir / "other.txt").write_text((workdir / "d.txt").read_text()[:-500])
    before = (workdir / "model.dat").read_bytes()
    out = subprocess.run([MPIEXEC, "-n", "1", *FEMTOGPT, "train", "--dataset", "d.txt", "--steps", "3", ":",
                          "-n", "1", *FEMTOGPT, "train", "--dataset", "other.txt", "--steps", "3"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    errors = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("Error: process 1 of 2 sees the dataset other.txt"), errors
    assert "every process must see the same files" in errors[0] and "Traceback" not in out.stderr
    assert (workdir / "model.dat").read_bytes() == before


def long_run(*extra):
    return subprocess.Popen([MPIEXEC, "-n", "2", *FEMTOGPT, "train", "--dataset", "d.txt", "--steps", "100000",
                             "--threads", "1", "--save-minutes", "0", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for_saves(path, step, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if load_model_file(path).optimizer["step"] >= step:
                return
        except Exception:
            pass  # not saved yet (or being replaced)
        time.sleep(0.05)
    raise AssertionError(f"no save at step {step} or later within {timeout} s")


def train_processes():
    """The pids of the `python -m femtogpt train` processes mpiexec started (not mpiexec itself)."""
    out = subprocess.run(["pgrep", "-a", "-f", "femtogpt train --dataset d.txt --steps 100000"],
                         capture_output=True, text=True).stdout.splitlines()
    return sorted(int(line.split()[0]) for line in out if line.split()[1] == sys.executable)


def test_a_killed_process_stops_the_run_and_the_file_keeps_its_last_save(workdir):
    launcher = long_run("--save-every", "7")
    try:
        wait_for_saves(workdir / "model.dat", 14)
        pids = train_processes()
        assert len(pids) == 2, pids
        os.kill(max(pids), signal.SIGKILL)  # the process started last: rank 1
        out, _ = launcher.communicate(timeout=60)
    finally:
        launcher.kill()
    assert launcher.returncode != 0
    assert "BAD TERMINATION" in out or "Killed" in out, out  # mpiexec says which process died and how
    step = load_model_file(workdir / "model.dat").optimizer["step"]
    assert step >= 14 and step % 7 == 0
    run("train", "--dataset", "d.txt", "--steps", "1", "--quiet")  # resumes (and removes a killed save's temp file)
    assert load_model_file(workdir / "model.dat").optimizer["step"] == step + 1
    assert not [p for p in os.listdir(workdir) if p.endswith(".tmp")]


def test_ctrl_c_on_mpiexec_stops_every_process_after_the_same_step_and_saves(workdir):
    launcher = long_run("--save-every", "0")
    try:
        deadline = time.monotonic() + 60
        lines = []
        while not any(line.startswith("step ") for line in lines):  # training has started
            assert time.monotonic() < deadline and launcher.poll() is None, "".join(lines)
            lines.append(launcher.stdout.readline())
        launcher.send_signal(signal.SIGINT)
        out, _ = launcher.communicate(timeout=60)
    finally:
        launcher.kill()
    out = "".join(lines) + out
    assert launcher.returncode == 130, out
    assert out.count("Stopping after this step and saving") == 1, out  # process 0 alone speaks
    saved = [line for line in out.splitlines() if line.startswith("Stopped (Ctrl-C). Saved model.dat at step ")]
    assert len(saved) == 1, out
    assert load_model_file(workdir / "model.dat").optimizer["step"] == int(saved[0].split()[6])


def test_without_mpi4py_a_process_started_by_mpiexec_says_how_to_install_it(workdir, monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    result = run("train", "--dataset", "d.txt", "--steps", "1", ok=False)
    assert result.exit_code == 1
    assert result.output.startswith("Error: started by mpiexec as one of 2 processes, but mpi4py is not installed")
    assert "pip install 'femtogpt[mpi]'" in result.output and result.output.count("\n") == 1


@pytest.mark.parametrize("size", range(1, 7))
def test_every_unit_goes_to_exactly_one_process_and_process_0_always_has_one(size):
    from femtogpt.train.distributed import Group

    class Comm:
        def __init__(self, rank):
            self.rank = rank

        def Get_rank(self):
            return self.rank

        def Get_size(self):
            return size

    for units in range(1, 11):
        ranges = [Group(Comm(r)).unit_range(units) for r in range(size)]
        assert ranges[0][0] == 0 and ranges[0][1] >= 1 and ranges[-1][1] == units
        assert all(a[1] == b[0] and a[0] <= a[1] for a, b in zip(ranges, ranges[1:]))


def test_eval_over_processes_gives_the_bits_of_one(workdir):
    import json

    run(*TRAIN, "--model", "model.dat", "--steps", 3)
    # 46 windows of 16 tokens in batches of 5: 10 batches (the last of one window), shared 5 + 5 and 4 + 3 + 3
    flags = ["eval", "--dataset", "d.txt", "--batch-size", 5, "--max-windows", 46, "--json"]
    one = json.loads(run(*flags).output)
    for n in (2, 3):
        out = mpiexec(n, *flags)
        assert out.returncode == 0, out.stdout + out.stderr
        lines = out.stdout.strip().splitlines()
        assert len(lines) == 1, out.stdout  # one voice: process 0's
        many = json.loads(lines[0])
        assert many["loss"] == one["loss"] and many["tokens"] == one["tokens"] and many["processes"] == n


def test_eval_processes_that_see_different_datasets_stop_with_one_line(workdir):
    (workdir / "other.txt").write_text((workdir / "d.txt").read_text()[:-500])
    out = subprocess.run([MPIEXEC, "-n", "1", *FEMTOGPT, "eval", "--dataset", "d.txt", ":",
                          "-n", "1", *FEMTOGPT, "eval", "--dataset", "other.txt"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    errors = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("Error: process 1 of 2 sees the dataset other.txt"), errors
