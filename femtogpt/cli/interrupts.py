"""Ctrl-C in `train`: one line and exit code 130 at any moment, saying what the model file holds.

A helper module for the command modules (it defines no commands): `interruptible` wraps a command so the
first Ctrl-C asks the loop to stop after the current step (and save), a second aborts, and an interrupt
before training started leaves the file unchanged.
"""
import functools
import os
import signal
import sys
import threading
import time

import click

from femtogpt.cli.common import save_checkpoint


class _Interrupts:
    """Ctrl-C during `train`, from its first line to its last. Before the loop runs it stops at once
    (nothing is written before the first step); while the loop runs, the first asks it to stop after the
    current step and save, a second aborts at once. `outcome` says in one line what the file then holds:
    saves are tracked, a save cut short included (the file's inode tells whether the rename happened).

    A KeyboardInterrupt can be lost on its way up: raised inside a ctypes callback from LLVM while Numba
    compiles (Python reports it as "unraisable" and goes on), or caught by a library. So each one sent
    up is sent again if it has not arrived (`arrived`) a moment later: at once when the unraisable hook
    below sees it swallowed (its report is dropped), after a second otherwise. An interrupt inside LLVM
    can also leave a half-built llvmlite object whose clean-up fails later, at exit: after a Ctrl-C
    those reports are dropped too (the hook stays installed through the exit)."""

    def __init__(self):
        self.phase = "starting"  # then "training", then "done"
        self.requested = False   # a first Ctrl-C while training
        self.sent = 0            # KeyboardInterrupts sent up so far
        self.sent_at = None      # when the last one was (time.monotonic())
        self.resent = False      # the SIGINT being handled is one we sent again: it stops, whatever the phase
        self.arrived = False     # one reached `_interruptible`: the outcome is being said
        self.checkpoint, self.start_step, self.saved_step = None, 0, None
        self.voice = True        # False: say nothing (a process of an MPI group other than process 0)
        self._previous = self._unraisable = None
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN):  # an ignored SIGINT stays so
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
            self._unraisable, sys.unraisablehook = sys.unraisablehook, self._on_unraisable

    def _on_sigint(self, signum, frame):
        resent, self.resent = self.resent, False
        if self.arrived:
            return
        if self.phase == "training" and not self.requested and not resent:
            self.requested = True
            if self.voice:
                click.echo("\nStopping after this step and saving (Ctrl-C again to abort without saving)...",
                           err=True)
            return
        if not resent and self.sent_at is not None and time.monotonic() - self.sent_at < 0.5:
            return  # one is on its way up
        self.sent, self.sent_at = self.sent + 1, time.monotonic()
        self._send_again(1.0)
        raise KeyboardInterrupt

    def _send_again(self, delay):
        """SIGINT again after `delay` seconds, unless the KeyboardInterrupt sent up last has arrived (or
        another was sent up since)."""
        sent = self.sent

        def again():
            if not self.arrived and self.sent == sent:
                self.resent = True
                os.kill(os.getpid(), signal.SIGINT)

        timer = threading.Timer(delay, again)
        timer.daemon = True
        timer.start()

    def _on_unraisable(self, unraisable):
        if self.sent and unraisable.exc_type is not KeyboardInterrupt and _llvm_object_cut_short(unraisable):
            return  # an LLVM object whose construction the interrupt cut short fails to clean up: noise
        if self.sent == 0 or self.arrived or not issubclass(unraisable.exc_type, KeyboardInterrupt):
            return self._unraisable(unraisable)
        self._send_again(0.01)  # swallowed on its way: send it again at once

    def restore(self, exiting=False):
        """Give SIGINT back; or, when the command exits because of a Ctrl-C, ignore the next ones: the
        outcome has been said, and one more Ctrl-C must not turn exit code 130 into a death by signal."""
        self.arrived = True  # nothing more is sent again
        if self._previous is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN if exiting else self._previous)
            if not (exiting and self.sent):  # exiting after an interrupt: the hook stays, for the clean-up
                sys.unraisablehook = self._unraisable

    def training(self, checkpoint):
        self.phase, self.checkpoint, self.start_step = "training", checkpoint, checkpoint.step

    def save(self, checkpoint, path):
        step, before = checkpoint.step, _file_identity(path)
        try:
            save_checkpoint(checkpoint, path)
            self.saved_step = step
        except KeyboardInterrupt:
            if _file_identity(path) != before:  # the new file had been renamed into place
                self.saved_step = step
            raise

    def outcome(self, path):
        """One line: what was interrupted and what `path` holds now."""
        ckpt = self.checkpoint
        if ckpt is None:
            return f"Interrupted before training started; {path} is unchanged."
        done, saved = ckpt.step - self.start_step, self.saved_step
        if saved is None:
            if done == 0:
                return f"Aborted before the first step finished; {path} is unchanged."
            return f"Aborted without saving; {path} is unchanged and this run's {done} step(s) are lost."
        if saved == ckpt.step:
            verb = "Interrupted" if self.phase == "done" else "Aborted"
            return f"{verb} after saving step {saved}; {path} holds every step of this run."
        return (f"Aborted without saving the last {ckpt.step - saved} step(s); {path} holds step {saved}, "
                f"its last save.")


def _llvm_object_cut_short(unraisable):
    """True for the error llvmlite raises when it frees an object whose __init__ a KeyboardInterrupt cut
    short (e.g. AttributeError '_as_parameter_' in ObjectRef.__del__, at the exit after the Ctrl-C)."""
    tb = unraisable.exc_traceback
    while tb is not None:
        if f"{os.sep}llvmlite{os.sep}" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _file_identity(path):
    try:
        st = os.stat(path)
        return st.st_dev, st.st_ino
    except OSError:
        return None


def interruptible(command):
    """Give `command` an `interrupts` argument (an _Interrupts, installed for the whole body) and turn a
    Ctrl-C anywhere in it into its one-line outcome and exit code 130."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        interrupts = _Interrupts()
        exiting = True
        try:
            result = command(*args, interrupts=interrupts, **kwargs)
            exiting = interrupts.requested
            return result
        except KeyboardInterrupt:
            interrupts.arrived = True  # further Ctrl-Cs wait: the outcome is being said
            line = interrupts.outcome(kwargs["model_path"])
            if interrupts.voice:
                click.echo(("\n" if sys.stderr.isatty() else "") + line, err=True)  # past the ^C on a terminal
            sys.exit(130)
        except SystemExit as exc:  # sys.exit(130) after a Ctrl-C that the loop finished and saved
            exiting = exc.code == 130
            raise
        except BaseException:
            exiting = interrupts.requested
            raise
        finally:
            interrupts.restore(exiting)

    return run
