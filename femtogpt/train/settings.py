"""The training settings of a run: the flags given now, else those stored in the model file, else defaults.

A run stores every setting that decides what it computes (config.TRAINING_SETTINGS: learning-rate
schedule, AdamW knobs, clipping, batch, units, dropout, validation) in the model file's train_state,
so `femtogpt train` with no flags continues a run exactly as it was started. A flag given on the
command line wins, and is stored for the next run.
"""
from femtogpt.config import TRAINING_SETTINGS, OptimizerConfig, settings_as_flags as as_flags  # noqa: F401


def resolve(given, stored):
    """(settings, from_file): every setting, from `given` (the flags on the command line) first, then
    `stored` (the file's, already validated), then the default; and the names taken from the file whose
    value differs from the default (what a resume should say it used)."""
    settings, from_file = {}, []
    for name, (default, _) in TRAINING_SETTINGS.items():
        if name in given:
            settings[name] = given[name]
        elif name in stored:
            settings[name] = stored[name]
            if stored[name] != default:
                from_file.append(name)
        else:
            settings[name] = default
    return settings, from_file


def settings_for_run(given, stored):
    """(settings, from_file, notes): `resolve`, then the rules every front end (the CLI, the Python
    API) applies. min_lr above lr is a ValueError when min_lr was given, and is otherwise lowered to
    lr (a note says so), since the schedule would run at the floor, above the peak; val_fraction
    without eval_every validates every 100 steps."""
    settings, from_file = resolve(given, stored)
    notes = []
    lr, min_lr = settings["lr"], settings["min_lr"]
    if min_lr > lr:
        if "min_lr" in given:
            raise ValueError(f"--min-lr {min_lr:g} is above --lr {lr:g}: the floor must not exceed the peak")
        notes.append(f"--min-lr lowered to --lr {lr:g} (it was {min_lr:g}, above it)")
        settings["min_lr"] = lr
    if settings["val_fraction"] and not settings["eval_every"]:
        settings["eval_every"] = 100
    return settings, from_file, notes


def train_options(settings, steps, seed, **loop_options):
    """The loop's TrainOptions for a run with these settings (batch and units as `batch_shape` says),
    `steps` steps, `seed`, and the loop's other options (saving, sampling, tracking) as given."""
    from femtogpt.train.loop import TrainOptions

    batch_size, units = batch_shape(settings)
    return TrainOptions(steps=steps, seed=seed, batch_size=batch_size, units=units, dropout=settings["dropout"],
                        val_fraction=settings["val_fraction"], eval_every=settings["eval_every"], **loop_options)


def optimizer_config(settings):
    """The AdamW settings (schedule, betas, eps, weight decay, clipping) of `settings`."""
    return OptimizerConfig(**{name: settings[name] for name in
                              ("lr", "min_lr", "warmup", "decay_steps", "beta1", "beta2", "eps", "weight_decay",
                               "schedule", "grad_clip")})


def batch_shape(settings):
    """(windows per step, work units per step): --grad-accum N runs N micro-batches of --batch-size
    windows (each cut into --units units) per step, which is one batch of N times as many windows in
    N times as many units: each thread still holds one unit's activations at a time."""
    n = settings["grad_accum"]
    return settings["batch_size"] * n, settings["units"] * n


def units_note(threads, units):
    """A line for a run whose threads far outnumber its work units (e.g. 16 threads, the default 2
    units), else None: a unit's kernels share its threads, but its matrix products are cut in at most
    two, so most cores would idle. The unit count is the user's to choose, since it is part of the
    result (like the batch size); the thread count never is."""
    if units < 1 or threads <= 2 * units:
        return None
    return (f"Note: {threads} threads for {units} work units: each unit's matrix products use at most 2 "
            f"threads; --units {threads} gives every thread one (part of the result, like --batch-size).")
