"""The growth pipeline: `grow` trains a model, saves a numbered checkpoint, inserts a layer, and so on
up to a depth (the fork's incremental-training.py), resumable at any point.

Parses the flags, calls femtogpt.growth.pipeline (where the stages, the checkpoints' names and the
resumption are described) and prints one line per stage and a table at the end. Training takes
train's settings flags (cli/common.py training_settings_options) and runs through the same loop,
lock and Ctrl-C handling (cli/interrupts.py) as `train`.
"""
import sys
from pathlib import Path

import click

from femtogpt.cli.common import (UserError, check_model_memory, check_output_path, load_dataset_tokens,
                                 lock_model_file, model_option, open_checkpoint, training_settings_options,
                                 use_engine)
from femtogpt.cli.flags import MAX_STEPS, SEED, THREADS
from femtogpt.cli.interrupts import interruptible


@click.command()
@model_option(help="Model to grow (M). It is trained in place and always holds the latest stage.")
@click.option("--dataset", default="dataset.txt", show_default=True, type=click.Path(),
              help="A text file, or a directory of text files.")
@click.option("--to-layers", type=click.IntRange(min=1), required=True,
              help="N: grow until the model has this many layers (checked against this machine's memory "
                   "first).")
@click.option("--steps-per-stage", type=click.IntRange(1, MAX_STEPS), required=True,
              help="S: training steps at each depth, the first and the last included.")
@click.option("--insert-at", type=click.Choice(["end", "mid"]), default="end", show_default=True,
              help="Where each new layer goes: end (appended, as incremental-training.py) or mid (at index "
                   "L // 2, between the two halves).")
@click.option("--init", type=click.Choice(["near-identity", "random"]), default="near-identity", show_default=True,
              help="The new layers' init, as insert-layer's (the optimizer's moments are kept either way).")
@training_settings_options
@click.option("--seed", type=SEED, default=None,
              help="Seed for batches, dropout and the new layers (negative seeds are refused) [default: the "
                   "file's seed].")
@click.option("--save-every", type=click.IntRange(0, MAX_STEPS), default=100,
              help="Also save the model every N steps within a stage (0: by time and at the stage's end).")
@click.option("--restart", is_flag=True,
              help="Start a new growth from the model as it is, even if it is in the middle of another.")
@click.option("--force", is_flag=True, help="Overwrite stage checkpoints already there that are not this growth's.")
@click.option("--quiet", is_flag=True, help="No live progress bar (the stage lines and the table still print).")
@click.option("--threads", type=THREADS, default=None,
              help="Worker threads, at most the CPUs this process may use [default: one per physical core].")
@interruptible
def grow(model_path, dataset, to_layers, steps_per_stage, insert_at, init, seed, save_every, restart, force, quiet,
         threads, interrupts, **given):
    """Grow a model layer by layer: train S steps, save MODEL.lL.dat, insert a layer; up to N layers.

    \b
    Starting from MODEL with L layers: train --steps-per-stage steps, save a copy as MODEL.lL.dat
    (MODEL's name less .dat, L its layers), insert a layer (--insert-at, --init), and again, until
    MODEL has --to-layers layers; then train the last stage and save MODEL.lN.dat. MODEL itself
    always holds the latest state.
    Resumable: run the same command again after a Ctrl-C (or a kill) and it goes on where it
    stopped, to the same final weights, bitwise, as a growth run in one go; with a larger
    --to-layers it extends a finished growth. The growth is recorded in MODEL.
    The training settings flags are train's, stored in MODEL the same way.
    Ctrl-C once: finish the current step, save, exit 130. Twice: abort without saving.
    """
    use_engine(threads)
    ctx = click.get_current_context()
    given = {name: value for name, value in given.items()  # the settings flags on the command line
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
    if not Path(dataset).exists():
        raise UserError(f"--dataset {dataset}: no such file or directory")
    if Path(model_path).exists():
        check_output_path(model_path, "--model", force=True)  # its saves must be able to land
    lock_model_file(model_path, "grow")  # held from before loading to after the last save
    ckpt = open_checkpoint(model_path)
    from femtogpt.growth.pipeline import (GrowError, check_tokens, files_to_write, finished, plan_growth, run_growth,
                                          stage_table)

    try:
        plan, position = plan_growth(ckpt, to_layers, steps_per_stage, insert_at, init, seed, restart,
                                     where=model_path)
    except GrowError as exc:
        raise UserError(str(exc)) from None
    if finished(model_path, plan, ckpt):
        click.echo(f"{model_path} has grown to {plan.to_layers} layers already ({plan.as_flags()}); "
                   f"nothing to do.")
        _print_table(stage_table(ckpt, plan, model_path))
        return
    settings = _settings(ckpt, given)
    _check_memory(ckpt, plan, settings, model_path)  # first: it bounds --to-layers
    for _, path in files_to_write(model_path, plan, ckpt):
        check_output_path(path, "the stage checkpoint", force=force or not path.exists(),
                          inputs=[("the --model file", model_path), ("the --dataset file", dataset)])

    from femtogpt.text.fingerprint import dataset_fingerprint
    from femtogpt.train.precompile import warm_up
    from femtogpt.train.progress import TrainDisplay
    from femtogpt.train.settings import batch_shape

    live = sys.stdout.isatty() and not quiet
    tokens = load_dataset_tokens(ckpt.tokenizer, dataset, live)
    try:
        check_tokens(tokens, settings, ckpt.hp.num_tokens)
    except GrowError as exc:
        raise UserError(str(exc)) from None
    dataset_info = {"dataset": str(dataset), "dataset_hash": dataset_fingerprint(dataset)}
    tokens_per_step = batch_shape(settings)[0] * ckpt.hp.num_tokens
    if position.resumed and (position.step > plan.start_step or position.layers > plan.start_layers):
        click.echo(f"Resuming the growth of {model_path} ({plan.as_flags()}): {position.layers} layers, step "
                   f"{position.step}, {position.done_in_stage} of {plan.steps_per_stage} steps of this stage done")
    else:
        click.echo(f"Growing {model_path} from {position.layers} to {plan.to_layers} layers, "
                   f"{plan.steps_per_stage} steps per depth from step {position.step}, {plan.init} layers "
                   f"inserted at the {plan.insert_at} (seed {plan.seed}); dataset {dataset}: {len(tokens):,} tokens")
    warm_up(spinner=live)

    def on_stage(stage):
        nxt = (f"; next: a {plan.init} layer at index {plan.insert_index(stage.layers)}"
               if stage.layers < plan.to_layers else "")
        click.echo(f"L{stage.layers}: steps {stage.first_step}-{stage.last_step}, loss {stage.loss:.4f} "
                   f"(last 10: {stage.loss_avg:.4f}), {stage.seconds:.1f} s; wrote {stage.checkpoint}{nxt}")

    try:
        result = run_growth(model_path, ckpt, plan, tokens, settings, dataset_info=dataset_info,
                            save_every=save_every, save_minutes=10.0,
                            display=lambda layers, steps, start: TrainDisplay(steps, start, tokens_per_step,
                                                                              live=live, quiet=not live),
                            should_stop=lambda: interrupts.requested, save=interrupts.save, on_stage=on_stage,
                            on_model=interrupts.training)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside training: what the file holds, and how to go on
        interrupts.arrived = True
        click.echo(("\n" if sys.stderr.isatty() else "") + interrupts.outcome(model_path) +
                   " Run the same command to continue the growth.", err=True)
        sys.exit(130)
    except GrowError as exc:
        raise UserError(str(exc)) from None
    interrupts.phase = "done"
    ckpt = result.checkpoint
    if result.failure:
        raise UserError(f"{result.failure}; stopped, and {model_path} keeps the last good weights "
                        f"({ckpt.hp.num_layers} layers, step {ckpt.step}). Try a lower --lr.")
    _print_table(stage_table(ckpt, plan, model_path))
    if result.stopped or interrupts.requested:
        click.echo(f"Stopped (Ctrl-C): {model_path} is saved at {ckpt.hp.num_layers} layers, step {ckpt.step}. "
                   f"Run the same command to continue the growth.", err=True)
        sys.exit(130)
    click.echo(f"Grown: {model_path} has {ckpt.hp.num_layers} layers, {ckpt.hp.num_params():,} parameters, "
               f"step {ckpt.step}.")


def _settings(ckpt, given):
    """The run's training settings: the flags given, else the file's, else the defaults (as train)."""
    from femtogpt.train.settings import settings_for_run

    try:
        settings, _, notes = settings_for_run(given, ckpt.train_state.get("settings", {}))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    for note in notes:
        click.echo(f"note: {note}", err=True)
    return settings


def _check_memory(ckpt, plan, settings, model_path):
    """Refuse, before any work, a growth whose last stage this machine cannot train at this batch."""
    from dataclasses import replace

    import numba

    from femtogpt.train.settings import batch_shape

    batch_size, units = batch_shape(settings)
    what = (f"--batch-size {settings['batch_size']}" + (f" x --grad-accum {settings['grad_accum']}"
                                                         if settings["grad_accum"] > 1 else ""))
    check_model_memory(replace(ckpt.hp, num_layers=plan.to_layers), batch_size,
                       f"{what}: training {model_path} at --to-layers {plan.to_layers}",
                       dropout=settings["dropout"] > 0, hint="; try a smaller --batch-size or --to-layers",
                       units=units, workers=numba.get_num_threads())


def _print_table(stages):
    click.echo(f"{'layers':>6}  {'steps':>13}  {'loss':>7}  {'last 10':>7}  {'seconds':>8}  checkpoint")
    for s in stages:
        steps = f"{s.first_step}-{s.last_step}" if s.steps else "-"
        click.echo(f"{s.layers:>6}  {steps:>13}  {s.loss:>7.4f}  {s.loss_avg:>7.4f}  {s.seconds:>8.1f}  "
                   f"{s.checkpoint or ('(not written)' if s.done else '(in progress)')}")


COMMANDS = [grow]
