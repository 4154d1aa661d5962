"""Training progress on the terminal: a rich live bar on a TTY, plain log lines otherwise.

Both show the global step, the loss, its smoothed value, the validation loss, the learning rate,
tokens per second, elapsed time and ETA. Messages (samples, saves) print above the bar.
"""
import sys
import time


class TrainDisplay:
    """live: a rich bar (default when stdout is a terminal); otherwise one plain line per step,
    at most one every `plain_interval` seconds (the model file keeps every step's loss anyway)."""

    def __init__(self, total_steps, start_step, tokens_per_step, live=None, console=None,
                 plain_interval=1.0, quiet=False):
        self.total, self.start, self.tokens_per_step = total_steps, start_step, tokens_per_step
        self.quiet = quiet  # no step lines at all (messages still print)
        self.live = (sys.stdout.isatty() if live is None else live) and not quiet
        self.smoothed = None
        self.val = float("nan")
        self.t0 = time.perf_counter()
        self.done = 0
        self.plain_interval, self.last_line = plain_interval, None
        if self.live:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            self.progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f} (avg {task.fields[smooth]:.4f})  "
                           "val {task.fields[val]:.4f}  lr {task.fields[lr]:.2e}  "
                           "{task.fields[tps]:,.0f} tok/s"),
                TimeElapsedColumn(), TimeRemainingColumn(), refresh_per_second=4, console=console)
            self.progress.start()
            total = None if total_steps is None else start_step + total_steps  # None: open-ended
            self.task = self.progress.add_task("train", total=total,
                                               completed=start_step, loss=float("nan"),
                                               smooth=float("nan"), val=float("nan"), lr=0.0, tps=0.0)

    def step(self, step, loss, lr, elapsed_s):
        self.done += 1
        self.smoothed = loss if self.smoothed is None else 0.9 * self.smoothed + 0.1 * loss
        tps = self.tokens_per_step / max(elapsed_s, 1e-9)
        if self.live:
            self.progress.update(self.task, completed=step, loss=loss, smooth=self.smoothed, lr=lr,
                                 tps=tps, val=self.val)
        elif not self.quiet:
            now = time.perf_counter()
            last = self.total is not None and self.done == self.total
            if self.last_line is not None and now - self.last_line < self.plain_interval and not last:
                return
            self.last_line = now
            spent = now - self.t0
            eta = "" if self.total is None else f" eta {spent / self.done * (self.total - self.done):.0f}s"
            val = f" val {self.val:.4f}" if self.val == self.val else ""
            print(f"step {step} loss {loss:.4f} avg {self.smoothed:.4f}{val} lr {lr:.2e} "
                  f"{tps:,.0f} tok/s ({elapsed_s * 1000:.0f} ms) elapsed {spent:.0f}s{eta}",
                  flush=True)

    def validation(self, step, val_loss):
        self.val = val_loss
        self.message(f"step {step}: validation loss {val_loss:.4f}")

    def message(self, text):
        if self.live:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)

    def close(self):
        if self.live:
            self.progress.stop()
