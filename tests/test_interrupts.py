"""Ctrl-C in `train` (issue 13): at any moment, one line and exit code 130, never a traceback, and the
line says what the model file really holds. Real subprocesses get real SIGINTs: during start-up (the
command line loading, the model loading, the kernel warm-up), mid-training, during a save, and twice.
"""
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import types

import pytest

from femtogpt.io.model_file import load_model_file
from femtogpt.tasks.toy_data import generate_text
from tests.run_cli import run

START_UP = ("Interrupted while starting; nothing was changed.",
            "Interrupted before training started; model.dat is unchanged.")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.txt").write_text(generate_text("simple_dummy", 2000, seed=1))
    return tmp_path


def init(*size):
    run("init", "--num-tokens", 8, "--embedding-degree", *(size or (16, "--num-layers", 1)), "--num-heads", 2,
        "--seed", 1)


class Train:
    """`femtogpt train` in a subprocess, its output collected line by line as it comes."""

    def __init__(self, *args, env=None, python=()):
        cmd = [sys.executable, *python, "-m", "femtogpt", "train", "--dataset", "d.txt", "--batch-size", "2",
               "--steps", "100000", *map(str, args)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    def wait_for(self, predicate, timeout=60):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline and self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.0005)

    def step_line(self, n):
        return any(line.startswith("step ") and int(line.split()[1]) >= n for line in list(self.lines))

    def interrupt(self, times=1, gap=0.001):
        for i in range(times):
            if i:
                time.sleep(gap)
            self.proc.send_signal(signal.SIGINT)

    def finish(self, timeout=60):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                with open(f"/proc/{self.proc.pid}/status") as f:
                    state = "".join(line for line in f if line.startswith(("State", "Sig", "Shd")))
            except OSError:
                state = ""
            self.proc.kill()
            raise AssertionError(f"still running {timeout} s after the Ctrl-C\n{state}" + "".join(self.lines[-20:]))
        self.reader.join(timeout=timeout)  # the pipe closes as the process exits
        assert not self.reader.is_alive(), "".join(self.lines)
        return "".join(self.lines)


def temp_files(workdir):
    return [p for p in os.listdir(workdir) if re.fullmatch(r"\.model\.dat\.[0-9a-f]{8}\.tmp", p)]


def check_outcome(train, workdir, before):
    """Exit code 130, no traceback, and a last line that is one of the outcomes, true of the file."""
    out = train.finish()
    assert train.proc.returncode == 130, out
    assert "Traceback" not in out and "Exception ignored" not in out and "Aborted!" not in out, out
    last = [line for line in out.strip().splitlines() if not line.startswith("import time:")][-1]
    data = (workdir / "model.dat").read_bytes()
    step = load_model_file(workdir / "model.dat").optimizer
    step = step["step"] if step else 0
    if last in START_UP or last.startswith(("Aborted before the first step finished; model.dat is unchanged",
                                            "Aborted without saving; model.dat is unchanged")):
        assert data == before, last
    elif m := re.fullmatch(r"Stopped \(Ctrl-C\)\. Saved model\.dat at step (\d+) \(loss [\d.]+\)\.", last):
        assert step == int(m[1]), last
    elif m := re.fullmatch(r"(Aborted|Interrupted) after saving step (\d+); model\.dat holds every step of this run\.", last):
        assert step == int(m[2]), last
    elif m := re.fullmatch(r"Aborted without saving the last \d+ step\(s\); model\.dat holds step (\d+), its last save\.", last):
        assert step == int(m[1]), last
    else:
        raise AssertionError(f"not an outcome line: {last!r}\n{out}")
    assert temp_files(workdir) == [] and not (workdir / ".model.dat.lock").exists()
    return last


def test_ctrl_c_during_start_up_leaves_the_file_unchanged(workdir):
    init()
    before = (workdir / "model.dat").read_bytes()
    cold = {"NUMBA_CACHE_DIR": str(workdir / "cold-kernel-cache")}  # the warm-up then compiles for ~20 s
    # counted from the moment the command line starts loading (its first import of click: -X importtime
    # reports each import as it completes), so no Ctrl-C lands in Python's own start-up, before femtogpt
    for delay in (0.0, 0.15, 0.4):  # loading the command line, then the library and the model
        train = Train(env=cold, python=("-X", "importtime"))
        train.wait_for(lambda: any(line.rstrip().split("|")[-1].strip().startswith("click") for line in train.lines))
        time.sleep(delay)
        train.interrupt()
        assert check_outcome(train, workdir, before) in START_UP
    train = Train(env=cold)  # during the kernel warm-up (after the "Model ..." line)
    train.wait_for(lambda: any(line.startswith("Model model.dat") for line in train.lines))
    time.sleep(0.3)
    train.interrupt()
    assert check_outcome(train, workdir, before) == START_UP[1]
    compiled = len(list((workdir / "cold-kernel-cache").rglob("*.nbi")))
    assert compiled < 10, compiled  # it stopped within a kernel's compilation, not after all ~20 of them
    shutil.rmtree(workdir / "cold-kernel-cache", ignore_errors=True)


def test_one_ctrl_c_mid_training_saves_the_step_it_finishes(workdir):
    init()
    before = (workdir / "model.dat").read_bytes()
    train = Train("--save-every", 0)
    train.wait_for(lambda: train.step_line(3))
    train.interrupt()
    last = check_outcome(train, workdir, before)
    assert last.startswith("Stopped (Ctrl-C). Saved model.dat at step ")
    assert "Stopping after this step and saving" in "".join(train.lines)


def test_two_ctrl_c_abort_and_say_which_step_the_file_holds(workdir):
    init()
    before = (workdir / "model.dat").read_bytes()
    for gap in (0.0005, 0.005, 0.05):
        train = Train("--save-every", 7)
        train.wait_for(lambda: train.step_line(20))
        train.interrupt(times=2, gap=gap)
        check_outcome(train, workdir, before)
        before = (workdir / "model.dat").read_bytes()


@pytest.mark.parametrize("times", [1, 2])
def test_ctrl_c_during_a_save(workdir, times):
    init(96, "--num-layers", 3)  # ~4 MB with its moments: a save takes a while
    before = (workdir / "model.dat").read_bytes()
    outcomes = set()
    for _ in range(3):
        train = Train("--save-every", 1)
        train.wait_for(lambda: train.step_line(2))
        train.wait_for(lambda: temp_files(workdir) != [])  # a save is being written
        train.interrupt(times=times, gap=0.0005)
        outcomes.add(check_outcome(train, workdir, before).split(";")[0].split(" at step")[0])
        before = (workdir / "model.dat").read_bytes()
    if times == 1:  # one Ctrl-C: the save completes and the run stops after it
        assert outcomes == {"Stopped (Ctrl-C). Saved model.dat"}


def test_an_interrupt_swallowed_by_a_ctypes_callback_is_delivered_again(monkeypatch):
    # inside a callback from C (LLVM's object-cache notification while Numba compiles) a
    # KeyboardInterrupt cannot propagate: Python reports it as "unraisable" and goes on. It must come
    # back, silently, where it can stop the command.
    from femtogpt.cli import interrupts as cli_interrupts

    redelivered = []
    real_timer = threading.Timer
    monkeypatch.setattr(cli_interrupts.threading, "Timer", lambda *a: redelivered.append(a) or real_timer(*a))
    interrupts = cli_interrupts._Interrupts()
    reported = []
    interrupts._unraisable = reported.append  # what would reach the default hook
    try:
        callback = ctypes.CFUNCTYPE(None)(lambda: signal.raise_signal(signal.SIGINT))
        with pytest.raises(KeyboardInterrupt):
            callback()  # the handler raises inside the callback: swallowed...
            assert [delay for delay, *_ in redelivered] == [1.0, 0.01]  # the watchdog, then at once
            time.sleep(2)  # ...and delivered again here
        assert reported == []
    finally:
        interrupts.restore()


def test_ctrl_c_in_any_other_command_is_one_line_and_130(workdir, monkeypatch):
    init()
    import femtogpt.io.checkpoint as checkpoint

    def interrupted(path, data=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "load", interrupted)
    previous = signal.getsignal(signal.SIGINT)
    try:
        result = run("reset-optimizer", ok=False)
    finally:
        signal.signal(signal.SIGINT, previous)  # the command, about to exit, ignores further Ctrl-Cs
    assert result.exit_code == 130 and result.output == "Interrupted.\n"
    assert not (workdir / ".model.dat.lock").exists()


def test_an_interrupt_a_library_swallows_is_sent_again():
    from femtogpt.cli import interrupts as cli_interrupts

    interrupts = cli_interrupts._Interrupts()
    try:
        with pytest.raises(KeyboardInterrupt):
            try:
                signal.raise_signal(signal.SIGINT)
                time.sleep(0.5)
            except KeyboardInterrupt:
                pass  # a library that catches it and goes on
            time.sleep(5)  # it comes back within a second or so: the sleep ends in KeyboardInterrupt
    finally:
        interrupts.restore()


def test_after_an_interrupt_llvmlite_clean_up_errors_are_dropped_and_others_still_reported():
    # a Ctrl-C inside llvmlite can cut an object's __init__ short; freeing it at exit then raises in
    # its __del__ (AttributeError '_as_parameter_'), which Python would print as "Exception ignored"
    from femtogpt.cli import interrupts as cli_interrupts

    def unraisable_from(filename, exc_type=AttributeError):
        code = compile(f"raise {exc_type.__name__}('x')", filename, "exec")
        try:
            exec(code)
        except BaseException as exc:
            return types.SimpleNamespace(exc_type=type(exc), exc_value=exc, exc_traceback=exc.__traceback__,
                                         err_msg="Exception ignored in", object=None)

    llvm = unraisable_from(os.path.join(os.sep, "venv", "llvmlite", "binding", "ffi.py"))
    other = unraisable_from(os.path.join(os.sep, "venv", "somelib", "x.py"))
    interrupts = cli_interrupts._Interrupts()
    reported = []
    interrupts._unraisable = reported.append
    try:
        interrupts._on_unraisable(llvm)  # no interrupt yet: a real error, reported
        interrupts.sent = 1  # a KeyboardInterrupt was sent up
        interrupts._on_unraisable(llvm)
        interrupts._on_unraisable(other)
        assert reported == [llvm, other]
        interrupts.restore(exiting=True)
        assert sys.unraisablehook == interrupts._on_unraisable  # it stays for the exit's clean-up
    finally:
        interrupts.restore()
        sys.unraisablehook = sys.__unraisablehook__
