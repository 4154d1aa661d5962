"""The training display (issue 15): at 80 columns the live line keeps step, loss and ETA whole, shows
validation only once there is one, and the demo's time-limited run has an ETA too."""
import io
import re

from rich.console import Console

from femtogpt.train.progress import BAR_MIN, TrainDisplay


def rendered(display_kwargs, steps, width=80, validation=None):
    """What the live display shows after `steps`, rendered as plain text in a `width`-column terminal
    (the messages printed above the bar, then the bar's line)."""
    console = Console(width=width, file=io.StringIO(), force_terminal=True, record=True, color_system=None)
    display = TrainDisplay(live=True, console=Console(width=width, file=io.StringIO(), force_terminal=True),
                           **display_kwargs)
    display.message = lambda text: console.print(text)
    for i, (loss, lr, seconds) in enumerate(steps, 1):
        if validation and i == validation[0]:
            display.validation(i, validation[1])
        display.step(display.start + i, loss, lr, seconds)
    console.print(display.progress.get_renderable())
    display.close()
    return console.export_text()


def test_the_live_line_fits_80_columns_with_step_loss_and_eta():
    text = rendered({"total_steps": 100_000, "start_step": 123_456, "tokens_per_step": 32 * 64},
                    [(1.5699, 9.96e-4, 0.030)] * 3)
    lines = [line for line in text.splitlines() if "loss" in line]
    assert lines and all(len(line) <= 80 for line in text.splitlines())
    last = lines[-1]
    assert "step 123459/223456" in last and "loss 1.5699" in last and re.search(r"eta \d+:\d\d", last), last
    assert "…" not in text and "val" not in last  # no validation yet: no "val nan"


def test_validation_shows_once_there_is_one_and_narrow_terminals_drop_extras_first():
    kwargs = {"total_steps": 10, "start_step": 0, "tokens_per_step": 1024}
    text = rendered(kwargs, [(2.0, 1e-3, 0.01)] * 3, validation=(2, 1.8765))
    assert "step 2: validation loss 1.8765" in text and "val 1.8765" in text.splitlines()[-1]
    display = TrainDisplay(live=False, quiet=True, **kwargs)
    display.smoothed, display.done = 2.0, 3
    for width in (40, 50, 60, 80, 120):
        line = display.line(3, 2.0, 1e-3, 100_000.0, 5.0, width)
        assert line.startswith("step 3/10  loss 2.0000") and re.search(r"eta \d+:\d\d$", line), line
        assert len(line) <= max(width - BAR_MIN - 2, len("step 3/10  loss 2.0000  eta 0:12"))


def test_a_time_limited_run_has_an_eta():
    display = TrainDisplay(None, 0, 1024, live=False, quiet=True, seconds=60)
    display.smoothed, display.done = 2.0, 1
    assert display.line(1, 2.0, 1e-3, 1000.0, 15.0, 80).endswith("eta 0:45")
