"""Two writers (issue 13): the writer's lock on a model file, and the temp files killed saves leave.

Every command that writes a model file holds its lock (femtogpt/io/lock.py) for the whole of its work;
a second writer is refused with one line naming the holder, readers are never held up, and a killed
holder leaves no stale lock. Saves under the lock remove the temp files that killed saves left.
"""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from femtogpt.io.checkpoint import load
from femtogpt.io.lock import LockError, ModelLocked, holds, lock_path, model_lock
from femtogpt.io.model_file import load_model_file
from femtogpt.tasks.toy_data import generate_text
from tests.fixture_paths import FORK_FIXTURES
from tests.run_cli import run

HOLDER = """import sys, time
from femtogpt.io.lock import model_lock
with model_lock(sys.argv[1], sys.argv[2]):
    print("locked", flush=True)
    time.sleep(120)
"""


def child_env():
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def hold(path, command="train"):
    """A separate process holding the writer's lock of `path` (until killed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), command], stdout=subprocess.PIPE,
                            text=True, env=child_env())
    assert proc.stdout.readline().strip() == "locked"
    return proc


def stop(proc, sig=signal.SIGKILL):
    proc.send_signal(sig)
    proc.wait(timeout=30)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.txt").write_text(generate_text("simple_dummy", 400, seed=1))
    run("init", "--num-tokens", 8, "--embedding-degree", 8, "--num-layers", 1, "--num-heads", 2, "--seed", 1)
    return tmp_path


def one_error_line(result):
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


# ---------------------------------------------------------------- the lock itself

def test_the_lock_file_names_the_holder_and_goes_away(tmp_path):
    model = tmp_path / "model.dat"
    with model_lock(model, "train"):
        assert holds(model) and lock_path(model) == tmp_path / ".model.dat.lock"
        assert lock_path(model).read_text() == f"{os.getpid()}\ntrain\n"
        with model_lock(model, "train"):  # re-entering in the same process just counts
            assert holds(model)
        assert holds(model)
    assert not holds(model) and not lock_path(model).exists()


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path):
    model = tmp_path / "model.dat"
    holder = hold(model, "train")
    try:
        with pytest.raises(ModelLocked) as info:
            with model_lock(model, "reset-optimizer"):
                pass
        assert str(info.value) == (f"{model} is being trained by process {holder.pid} (femtogpt train); "
                                   f"try again when it has finished")
        assert info.value.pid == holder.pid
        link = tmp_path / "link.dat"  # another name of the same file: the same lock
        link.symlink_to(model)
        with pytest.raises(ModelLocked):
            with model_lock(link):
                pass
    finally:
        stop(holder)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    model = tmp_path / "model.dat"
    holder = hold(model, "insert-layer")
    with pytest.raises(ModelLocked, match=rf"being written by process {holder.pid} \(femtogpt insert-layer\)"):
        with model_lock(model):
            pass
    stop(holder)  # kill -9: its lock file stays, its lock does not
    assert lock_path(model).exists()
    with model_lock(model, "train"):
        assert lock_path(model).read_text() == f"{os.getpid()}\ntrain\n"
    assert not lock_path(model).exists()


def test_a_folder_that_does_not_exist_is_one_line(tmp_path):
    with pytest.raises(LockError, match=r"missing/model.dat: cannot lock it for writing: directory .* does not exist"):
        with model_lock(tmp_path / "missing" / "model.dat"):
            pass


# ---------------------------------------------------------------- every writer holds it, no reader takes it

def test_every_writer_is_refused_while_another_process_writes_and_readers_are_not(workdir):
    run("train", "--dataset", "d.txt", "--steps", 2, "--batch-size", 2, "--quiet")
    run("init", "--model", "other.dat", "--num-tokens", 8, "--embedding-degree", 8, "--num-layers", 1,
        "--num-heads", 2, "--seed", 2)
    before = Path("model.dat").read_bytes()
    holder = hold(workdir / "model.dat", "train")
    try:
        expected = f"Error: model.dat is being trained by process {holder.pid} (femtogpt train); try again when it has finished"
        writers = [
            ["train", "--dataset", "d.txt", "--steps", 1, "--batch-size", 2],
            ["reset-optimizer"],
            ["init", "--force", "--num-tokens", 8, "--embedding-degree", 8, "--num-layers", 1, "--num-heads", 2],
            ["insert-layer", "--input", "model.dat", "--output", "model.dat", "--insert-at", 0],
            ["insert-layer", "--input", "other.dat", "--output", "model.dat", "--insert-at", 0, "--force"],
            ["init-with", "--parent", "other.dat", "--child", "model.dat", "--force"],
            ["import-fork", FORK_FIXTURES / "tiny_abs.dat", "model.dat", "--force"],
        ]
        for args in writers:
            assert one_error_line(run(*args, ok=False)) == expected, args
        for args in (["info"], ["loss"], ["eval", "--dataset", "d.txt"], ["infer", "ab", "--count", 3],
                     ["compare", "model.dat", "other.dat"], ["count-tokens", "--model", "model.dat", "--dataset", "d.txt"],
                     ["export", "--out", "w.npz"]):
            run(*args)  # readers: not held up
        # the holder's file is untouched, and no lock file or temp file of ours is left
        assert Path("model.dat").read_bytes() == before
    finally:
        stop(holder)
    assert sorted(p.name for p in workdir.iterdir() if p.name.startswith(".")) == [".model.dat.lock"]  # the killed holder's


def start_train(*args):
    args = ["train", "--dataset", "d.txt", "--batch-size", 2, "--save-every", 0, "--steps", 100000, *args]
    return subprocess.Popen([sys.executable, "-m", "femtogpt", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_steps(proc, n):
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("step ") and int(line.split()[1]) >= n:
            return lines
    raise AssertionError("".join(lines))


def test_two_concurrent_trains_one_refuses_the_other_keeps_its_work(workdir):
    first = start_train()
    try:
        wait_for_steps(first, 3)
        expected = (f"Error: model.dat is being trained by process {first.pid} (femtogpt train); "
                    f"try again when it has finished")
        assert one_error_line(run("train", "--dataset", "d.txt", "--steps", 5, "--batch-size", 2, ok=False)) == expected
        assert one_error_line(run("reset-optimizer", ok=False)) == expected
        first.send_signal(signal.SIGINT)  # the first run stops after this step and saves
        out = first.communicate(timeout=120)[0]
    finally:
        if first.poll() is None:
            stop(first)
    assert first.returncode == 130, out
    saved = int(out.strip().splitlines()[-1].split(" at step ")[1].split()[0])
    assert saved >= 3 and load_model_file(workdir / "model.dat").optimizer["step"] == saved  # its work is in the file
    assert not (workdir / ".model.dat.lock").exists()
    run("reset-optimizer")  # free again
    assert load(workdir / "model.dat").optimizer is None


# ---------------------------------------------------------------- temp files of killed saves

def test_a_save_under_the_lock_removes_the_temp_files_killed_saves_left(workdir):
    stale = [workdir / f".model.dat.{h}.tmp" for h in ("0badf00d", "deadbeef")]
    others = [workdir / ".other.dat.deadbeef.tmp", workdir / ".model.dat.old.tmp", workdir / "model.dat.deadbeef.tmp"]
    for p in stale + others:
        p.write_bytes(b"x" * 1000)
    ckpt = load(workdir / "model.dat")
    ckpt.save(workdir / "model.dat")  # no lock: another process might be mid-save, so nothing is removed
    assert all(p.exists() for p in stale)
    run("reset-optimizer")  # under the lock: the file's own stale temps go, nothing else does
    assert not any(p.exists() for p in stale) and all(p.exists() for p in others)
    for p in stale:
        p.write_bytes(b"x")
    run("train", "--dataset", "d.txt", "--steps", 1, "--batch-size", 2)
    assert not any(p.exists() for p in stale)


def test_temp_files_of_a_symlinked_model_are_found_beside_the_real_file(tmp_path):
    from femtogpt.atomic import remove_temp_files, temp_files

    real_dir = tmp_path / "real"
    real_dir.mkdir()
    (real_dir / "m.dat").write_bytes(b"model")
    (tmp_path / "link.dat").symlink_to(real_dir / "m.dat")
    stale = real_dir / ".m.dat.0123abcd.tmp"
    stale.write_bytes(b"x")
    (tmp_path / ".link.dat.0123abcd.tmp").write_bytes(b"x")  # not a temp of the file the link names
    assert temp_files(tmp_path / "link.dat") == [stale]
    assert remove_temp_files(tmp_path / "link.dat") == 1 and not stale.exists()
    assert (tmp_path / ".link.dat.0123abcd.tmp").exists()
