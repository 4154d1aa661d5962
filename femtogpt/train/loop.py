"""The training loop over a tokenized dataset: sampling, steps, validation, saving, stopping.

Everything random in a step is drawn from (seed, global step), so 5 + 5 steps in two runs give the
same weights bitwise as 10 steps in one. The model file is saved every `save_every` steps, every
`save_minutes` minutes, and at the end unless the last save already holds the last step;
`should_stop()` (a Ctrl-C flag) ends the run after the current step, which is then saved too. A
non-finite loss, gradient or update stops the run before anything changes; the last good step is
saved. A run that did no step saves nothing (the file stays as it was). With a `save_best` callable,
every validation loss below `best_loss` also saves the model there (the caller's best file).
"""
import math
import time
from dataclasses import dataclass

from femtogpt.io.logs import EVAL, TRAIN_SESSION, append_step, new_log, timeline
from femtogpt.train.evaluate import evaluate_tokens
from femtogpt.model.generate import sample_text
from femtogpt.model.gpt import DEFAULT_UNITS
from femtogpt.train.step import NonFiniteLoss, sample_batch, train_step
from femtogpt.train.tracking import track, track_names


@dataclass
class TrainOptions:
    steps: int
    seed: int
    batch_size: int = 32
    units: int = DEFAULT_UNITS       # work units a batch is cut into (model/gpt.py): part of the result
    dropout: float = 0.0
    save_every: int = 100           # steps between saves (0: only at the end)
    save_minutes: float = 0.0       # also save when this long has passed since the last save (0: off)
    val_fraction: float = 0.0       # held-out tail of the dataset (0: no validation)
    eval_every: int = 0             # steps between validation losses (0: never)
    eval_windows: int = 64          # cap on validation windows, to keep evaluation quick
    sample_every: int = 0           # steps between printed samples (0: never)
    sample_len: int = 100           # tokens per sample
    track_every: int = 0            # steps between recorded training statistics (train/tracking.py; 0: never)
    batch_offset: int | None = None  # None: batches keyed by (seed, optimizer step); else by (seed, batch_offset
                                     # + steps done in this run), so runs whose optimizers differ see the same data


@dataclass
class TrainResult:
    last_loss: float
    stopped: bool = False           # Ctrl-C
    failure: str | None = None      # non-finite loss, gradient or update
    steps: int = 0                  # steps done in this run
    saved_step: int | None = None   # the optimizer step of this run's last save (None: none)
    best_loss: float = math.inf     # the lowest validation loss seen (with save_best: the best file's)
    best_step: int | None = None    # the step of a best save in this run, if any


def split_tokens(tokens, val_fraction, T):
    """(train, val): the last val_fraction of the tokens is held out (None when 0)."""
    if val_fraction <= 0:
        return tokens, None
    cut = int(len(tokens) * (1.0 - val_fraction))
    train, val = tokens[:cut], tokens[cut:]
    if len(train) < T + 1 or len(val) < 2:
        raise ValueError(f"--val-fraction {val_fraction} leaves {len(train)} training and {len(val)} "
                         f"validation tokens; need at least {T + 1} and 2")
    return train, val


def run_training(checkpoint, tokens, options, save, display, should_stop=lambda: False,
                 dataset_info=None, save_best=None, best_loss=math.inf, group=None):
    """Train `checkpoint` in place; `save()` writes the model file. Returns a TrainResult.
    `display` gets step(step, loss, lr, seconds) after every step, validation(step, val_loss) before
    that step's step() call, message(text) for samples, and close() at the end (TrainDisplay is the
    CLI's; the experiments pass their own to record curves). With a process `group`
    (train/distributed.py) every process runs this with the same arguments and its share of each
    batch; they stop after the same step when `should_stop()` is true on any of them, and only
    process 0 samples (its caller passes the real `save`)."""
    if group is not None:
        stop_here = should_stop
        should_stop = lambda: group.any(stop_here())  # noqa: E731  (collective: every process, every step)
    T = checkpoint.hp.num_tokens
    train_tokens, val_tokens = split_tokens(tokens, options.val_fraction, T)
    if len(train_tokens) < T + 1:
        raise ValueError(f"the dataset has {len(train_tokens)} tokens; training needs at least "
                         f"num_tokens + 1 = {T + 1}")
    opt = checkpoint.ensure_optimizer()
    checkpoint.train_state["seed"] = options.seed
    validation = {"val_fraction": options.val_fraction} if val_tokens is not None else {}
    history = timeline(checkpoint.logs, T)
    seconds, seen = (history[-1][2], history[-1][3]) if history else (0.0, 0)  # trained so far, all sessions
    checkpoint.logs.append(new_log(TRAIN_SESSION, dropout=options.dropout, seed=options.seed,
                                batch_size=options.batch_size, units=options.units, start_step=opt.step,
                                tokens_per_step=options.batch_size * T, **validation, **(dataset_info or {}),
                                **({"track_names": track_names(checkpoint.hp)} if options.track_every else {})))
    model, result = checkpoint.model, TrainResult(float("nan"), best_loss=best_loss)
    last_save, start_step = time.monotonic(), opt.step

    def save_now():
        save()
        result.saved_step = opt.step

    try:
        for i in range(options.steps):
            if should_stop():
                result.stopped = True
                break
            key = opt.step if options.batch_offset is None else options.batch_offset + i
            ids, targets = sample_batch(train_tokens, options.batch_size, T, options.seed, key)
            tracked = options.track_every and (opt.step + 1) % options.track_every == 0
            before = model.params.data.copy() if tracked else None  # for the update-to-weight ratios
            t0 = time.perf_counter()
            try:
                loss, lr = train_step(model, opt, ids, targets, options.dropout, options.seed, options.units,
                                      group)
            except NonFiniteLoss as exc:
                result.failure = str(exc)
                break
            elapsed = time.perf_counter() - t0
            result.last_loss, result.steps = loss, i + 1
            append_step(checkpoint.logs, opt.step, loss, round(elapsed * 1000))
            seconds, seen = seconds + round(elapsed * 1000) / 1000, seen + options.batch_size * T
            if tracked:
                checkpoint.logs.append(track(model, before, ids, options.units, opt.step))
            if val_tokens is not None and options.eval_every and opt.step % options.eval_every == 0:
                val, _ = evaluate_tokens(model, val_tokens, max_windows=options.eval_windows)
                checkpoint.logs.append(new_log(EVAL, step=opt.step, val_loss=val, seconds=round(seconds, 3),
                                               tokens=seen))
                display.validation(opt.step, val)
                if val < result.best_loss:
                    result.best_loss = val
                    if save_best is not None and save_best() is not False:  # False: it failed
                        result.best_step = opt.step
            display.step(opt.step, loss, lr, elapsed)
            if options.sample_every and opt.step % options.sample_every == 0 and (group is None or group.lead):
                text = sample_text(model, checkpoint.tokenizer, options.sample_len,
                                   seed=[options.seed, opt.step, 0x73616D70])
                display.message(f"--- sample at step {opt.step} ---\n{text}")
            by_steps = options.save_every and (i + 1) % options.save_every == 0
            by_time = options.save_minutes and time.monotonic() - last_save >= 60 * options.save_minutes
            if (by_steps or by_time) and i + 1 < options.steps:
                save_now()
                last_save = time.monotonic()
        else:
            result.stopped = should_stop()
    finally:
        display.close()
    if opt.step != start_step and result.saved_step != opt.step:
        save_now()
    return result
