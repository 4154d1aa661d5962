"""Training progress on the terminal: a rich live bar on a TTY, plain log lines otherwise.

Both show the global step, the loss, its smoothed value, the validation loss (once there is one),
the learning rate, tokens per second, elapsed time and ETA. Messages (samples, saves) print above the bar.
"""
import sys
import time


BAR_MIN = 10  # columns of the live bar, at least; the text gets the rest of the terminal's width


class SilentDisplay:
    """The display interface of train.loop.run_training, showing nothing: a base for code that records
    or forwards steps instead (the Python API's on_step, the experiments' curves)."""

    def step(self, step, loss, lr, seconds):
        pass

    def validation(self, step, val_loss):
        pass

    def message(self, text):
        pass

    def close(self):
        pass


class TrainDisplay:
    """live: a rich bar (default when stdout is a terminal); otherwise one plain line per step,
    at most one every `plain_interval` seconds (the model file keeps every step's loss anyway).
    `seconds`: a run that ends after this long (the demo) rather than after `total_steps`; either
    gives the ETA. The live line fits the terminal, 80 columns included: step, loss and ETA always
    show; the average, validation (only once there is one), tokens/s, lr and elapsed time follow
    while there is room."""

    def __init__(self, total_steps, start_step, tokens_per_step, live=None, console=None,
                 plain_interval=1.0, quiet=False, seconds=None):
        self.total, self.start, self.tokens_per_step = total_steps, start_step, tokens_per_step
        self.seconds = seconds
        self.quiet = quiet  # no step lines at all (messages still print)
        self.live = (sys.stdout.isatty() if live is None else live) and not quiet
        self.smoothed = None
        self.val = float("nan")
        self.t0 = time.perf_counter()
        self.done = 0
        self.plain_interval, self.last_line = plain_interval, None
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn

            self.progress = Progress(BarColumn(bar_width=BAR_MIN), TextColumn("{task.description}"),
                                     refresh_per_second=4, console=console)
            self.progress.start()
            self.task = self.progress.add_task("starting...", total=self._bar_total(), completed=0)

    def _bar_total(self):
        return self.total if self.total is not None else (self.seconds or None)

    def _eta(self, spent):
        """Seconds left, or None where the end is unknown."""
        if self.total is not None:
            return spent / max(self.done, 1) * (self.total - self.done)
        if self.seconds is not None:
            return max(0.0, self.seconds - spent)
        return None

    def line(self, step, loss, lr, tps, spent, width):
        """The live line for a terminal `width` columns wide (the bar takes BAR_MIN + 1 of them)."""
        eta = self._eta(spent)
        total = "" if self.total is None else f"/{self.start + self.total}"
        must = [f"step {step}{total}", f"loss {loss:.4f}"] + ([f"eta {_clock(eta)}"] if eta is not None else [])
        extra = [f"avg {self.smoothed:.4f}"] + ([f"val {self.val:.4f}"] if self.val == self.val else [])
        extra += [f"{tps / 1000:.1f}k tok/s" if tps >= 10_000 else f"{tps:.0f} tok/s", f"lr {lr:.1e}",
                  f"{_clock(spent)}"]
        room = width - BAR_MIN - 2 - len("  ".join(must))
        shown = []
        for part in extra:  # in order of priority, while they fit
            if len(part) + 2 > room:
                break
            shown.append(part)
            room -= len(part) + 2
        return "  ".join(must[:2] + shown + must[2:])

    def step(self, step, loss, lr, elapsed_s):
        self.done += 1
        self.smoothed = loss if self.smoothed is None else 0.9 * self.smoothed + 0.1 * loss
        tps = self.tokens_per_step / max(elapsed_s, 1e-9)
        spent = time.perf_counter() - self.t0
        if self.live:
            text = self.line(step, loss, lr, tps, spent, self.progress.console.width)
            completed = self.done if self.total is not None else min(spent, self.seconds or 0.0)
            self.progress.update(self.task, completed=completed, description=text)
        elif not self.quiet:
            now = time.perf_counter()
            last = self.total is not None and self.done == self.total
            if self.last_line is not None and now - self.last_line < self.plain_interval and not last:
                return
            self.last_line = now
            eta = self._eta(spent)
            eta = "" if eta is None else f" eta {eta:.0f}s"
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


def _clock(seconds):
    """0:07, 12:05, 3:02:11."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
