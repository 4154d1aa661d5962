"""Judging models: `score` (did it learn a toy dataset's pattern?) and `plot` (loss curves).

The scores are femtogpt/tasks/scoring.py, the pictures femtogpt/tools/plotting.py; here only flags and output.
"""
import json
from pathlib import Path

import click

from femtogpt.cli.common import UserError, check_output_path, open_checkpoint, plot_errors, use_engine
from femtogpt.cli.flags import MAX_LIST, SEED, TOY_TASKS, TemperatureType

MAX_SAMPLES = 100_000  # score --samples: 500 times the largest default


def _pct(x):
    return "   -" if x is None else f"{100 * x:5.1f}%"


def print_report(r):
    """The human-readable form of a run_task result."""
    d = r["details"]
    how = "greedy" if r["temperature"] == 0 else f"temperature {r['temperature']:g}, seed {r['seed']}"
    click.echo(f"{r['task']} on {r['model']}: {r['samples']} samples, {how}, {r['seconds']:.1f} s")
    if r["task"] == "simple_dummy2":
        click.echo("action  correct/total  accuracy")
        for a, row in d["actions"].items():
            click.echo(f"  {a}      {row['correct']:4d}/{row['total']:<4d}    {_pct(row['accuracy'])}")
        click.echo(f"actions above 70%: {d['actions_over_70']}/10; overall {_pct(d['accuracy'])}")
    elif r["task"] == "simple_dummy":
        click.echo(f"valid words: {d['valid']}/{d['lines']} ({_pct(d['fraction'])}); lengths 4/6: "
                   f"{d['length4']}/{d['length6']}; unique {d['unique']}; start rule {_pct(d['start_rule'])}")
        if d["invalid_reasons"]:
            click.echo("invalid: " + ", ".join(f"{k} {v}" for k, v in d["invalid_reasons"].items()))
    elif r["task"] == "simple_sequence":
        click.echo(f"letters {_pct(d['letters'])}, delimiters {_pct(d['delimiters'])}, "
                   f"next letter {_pct(d['next_letter'])}")
    elif r["task"] == "simple_sequence2":
        cols = ", ".join(f"{k} {_pct(v)}" for k, v in d["columns"].items())
        click.echo(f"second line {_pct(d['line2'])}, both lines {_pct(d['both_lines'])}; per cycle: {cols}")
    elif r["task"] == "addition_dummy":
        click.echo(f"well-formed answers {_pct(d['well_formed'])}")
    for p in r["log_prompts"]:
        mark = "ok " if p["correct"] else "no "
        click.echo(f"  log prompt {p['prompt']!r}: {mark} got {p['generated']!r}, expected {p['expected']!r}")
    click.echo(f"score ({r['metric']}): {_pct(r['score']).strip()}")


@click.command()
@click.option("--task", required=True, type=TOY_TASKS, help="The toy dataset the model was trained on.")
@click.option("--model", "model_path", default="model.dat", show_default=True,
              type=click.Path(dir_okay=False), help="Model file.")
@click.option("--samples", type=click.IntRange(1, MAX_SAMPLES), default=None,
              help="Prompts (words for simple_dummy) [default: 100; simple_sequence 40; simple_dummy 200].")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the prompts and of sampling (negative seeds are refused).")
@click.option("--temperature", type=TemperatureType(), default=None,
              help="0 = greedy, else at least 1e-6 [default: 0; 1 for simple_dummy, which needs variety].")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
def score(task, model_path, samples, seed, temperature, as_json):
    """Score a model on a toy task: does its output follow the generator's pattern?

    \b
    simple_dummy2     accuracy per action 0-9 (the fork's eval: 10 lines of context, 60 chars)
    addition_dummy    exact answers after "a + b = "
    simple_sequence   the next 14 characters, letters and delimiters apart
    simple_sequence2  the next line for lines a 2000-line dump never contains
    simple_dummy      the share of sampled words that follow the rules
    Prompts come from a fresh dump (seeded by --seed, never equal to a `dummy-data --seed` dump).
    """
    if not Path(model_path).exists():
        raise UserError(f"--model {model_path}: no such file")
    ckpt = open_checkpoint(model_path)
    use_engine()
    from femtogpt.tasks.scoring import run_task

    from femtogpt.tasks.toy_data import TASKS

    missing = TASKS[task].needs
    tok = ckpt.tokenizer
    if missing and tok.unk_id is not None and tok.count_unknown(missing):
        raise UserError(f"--model {model_path}: its tokenizer cannot encode the {task} characters "
                        f"{missing!r}; was it trained on {task}?")
    from femtogpt.text.tokenizer import TokenizerError

    try:
        result = {"model": str(model_path), **run_task(ckpt.model, tok, task, samples, seed, temperature)}
    except TokenizerError as exc:
        raise UserError(f"--model {model_path}: its tokenizer failed on the {task} prompts: {exc}") from None
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_report(result)


@click.command()
@click.option("--model", "models", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="A model file; repeat to draw several on one picture.")
@click.option("--out", default="loss.png", show_default=True, type=click.Path(dir_okay=False),
              help="The PNG to write.")
@click.option("--smooth", "smooth_window", type=click.IntRange(1, MAX_LIST), default=1, show_default=True,
              help="Moving average over this many steps (training loss only).")
@click.option("--title", default=None, help="Picture title [default: the file names].")
@click.option("--x", "x_axis", type=click.Choice(["step", "time", "tokens"]), default="step", show_default=True,
              help="Against steps trained, the seconds they took, or the tokens they trained on (the "
                   "validation-loss-over-time view for comparing variants).")
@click.option("--stat", "stats", multiple=True,
              help="Draw a statistic recorded by train --track-every instead of the loss (repeatable; "
                   "shell-style patterns such as 'L*.rms' draw every match).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def plot(models, out, smooth_window, title, x_axis, stats, force):
    """Draw the training (and validation) loss recorded in model files to a PNG.

    Needs matplotlib: pip install 'femtogpt[plot]'.
    """
    check_output_path(out, "--out", force, inputs=[("a --model file", path) for path in models])
    from femtogpt.io.model_file import ModelFileError, peek_header
    from femtogpt.tools.plotting import UnsupportedFormat, distinct_labels, plot_models

    labels, entries = distinct_labels(models), []
    for label, path in zip(labels, models):
        try:
            header = peek_header(Path(path))
            entries.append((label, header["logs"], header["hyperparameters"].num_tokens))
        except ModelFileError as exc:
            raise UserError(str(exc)) from None
    if stats:
        return _plot_stats(entries, stats, out, title, force)
    with plot_errors("--out", out):
        try:
            steps = plot_models(entries, out, smooth_window, title or ", ".join(labels) + " loss", x=x_axis)
        except ValueError as exc:
            if isinstance(exc, UnsupportedFormat):
                raise
            raise UserError(f"{', '.join(models)}: {exc}") from None
    click.echo(f"Wrote {out} ({len(models)} model{'s' if len(models) > 1 else ''}, {steps:,} steps)")


def _plot_stats(entries, patterns, out, title, force):
    """plot --stat: the tracked statistics matching `patterns`, of every model, against the step."""
    from fnmatch import fnmatchcase

    from femtogpt.tools.plotting import plot_series
    from femtogpt.train.tracking import tracked_series

    series, known = [], set()
    for label, logs, _ in entries:
        recorded = tracked_series(logs)
        known |= set(recorded)
        for name, (steps, values) in recorded.items():
            if any(fnmatchcase(name, p) for p in patterns):
                series.append({"x": steps, "y": values, "label": f"{label} {name}" if len(entries) > 1 else name})
    if not series:
        hint = (f"recorded: {', '.join(sorted(known)[:12])}{', ...' if len(known) > 12 else ''}" if known
                else "none recorded: train with --track-every N")
        raise UserError(f"--stat {' '.join(patterns)}: no such statistic ({hint})")
    with plot_errors("--out", out):
        plot_series(series, out, title=title or ", ".join(patterns), xlabel="step", ylabel="value")
    click.echo(f"Wrote {out} ({len(series)} series)")


COMMANDS = [score, plot]
