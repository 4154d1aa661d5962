"""The commands over one model file's life: init, train, reset-optimizer.

Each command parses its flags, calls the library and prints; heavy modules are imported inside the
command bodies so `femtogpt --help` stays instant. Expected failures become one `Error:` line. Running
a model (infer, eval) is cli/infer.py; reading its record (info, loss) is cli/info.py.
"""
import math
import sys
from pathlib import Path

import click

from femtogpt.cli.common import (UserError, build_tokenizer_from_flags, check_model_memory,
                                 check_new_model_memory, check_output_path, load_dataset_tokens, model_option,
                                 open_checkpoint, save_checkpoint, tokenizer_options, training_settings_options,
                                 use_engine)
from femtogpt.cli.flags import MAX_GENERATED, MAX_STEPS, POS_ENCODINGS, SEED, THREADS, FiniteFloat
from femtogpt.cli.common import lock_model_file, read_model_bytes_or_fail, same_file
from femtogpt.cli.flags import HiddenAliases
from femtogpt.cli.interrupts import interruptible
from femtogpt.cli.processes import (check_same_inputs, process_group, quiet_unless_lead, threads_per_process,
                                     together)


def _warn(msg):
    click.echo(msg, err=True)


def make_hyperparameters(vocab_size, num_tokens, embedding_degree, num_layers, num_heads, pos_enc):
    from femtogpt.config import Hyperparameters

    if embedding_degree % num_heads:
        raise UserError(f"--embedding-degree ({embedding_degree}) must be divisible by "
                        f"--num-heads ({num_heads})")
    if pos_enc == "rotary" and (embedding_degree // num_heads) % 2:
        raise UserError(f"--positional-encoding rotary needs an even head size (--embedding-degree / "
                        f"--num-heads), got {embedding_degree} / {num_heads} = {embedding_degree // num_heads}")
    return Hyperparameters(vocab_size=vocab_size, num_tokens=num_tokens,
                           embedding_degree=embedding_degree, num_layers=num_layers,
                           num_heads=num_heads, pos_enc=pos_enc).validate()


@click.command()
@model_option(help="Model file to create.")
@tokenizer_options
@click.option("--positional-encoding", "pos_enc", type=POS_ENCODINGS, default="absolute",
              help="absolute: the reference's fixed sinusoidal table added to the embeddings; learned: a "
                   "trained table (T x E parameters) added instead; rotary: RoPE on each head's queries "
                   "and keys (even head size); none.")
@click.option("--num-tokens", type=click.IntRange(min=1), default=80,
              help="Context length T. Sizes are checked against this machine's memory before anything "
                   "is built.")
@click.option("--embedding-degree", type=click.IntRange(min=1), default=80, help="Embedding size E.")
@click.option("--num-layers", type=click.IntRange(min=1), default=4, help="Layers L.")
@click.option("--num-heads", type=click.IntRange(min=1), default=4, help="Attention heads H (E % H == 0).")
@click.option("--seed", type=SEED, default=None,
              help="Seed for the init and, later, training (negative seeds are refused) [default: random].")
@click.option("--force", is_flag=True, help="Overwrite an existing model file.")
def init(model_path, tokenizer, tokenizer_data, case_sensitive, reserve_tokens, max_vocab, tokenizer_from, pos_enc,
         num_tokens, embedding_degree, num_layers, num_heads, seed, force):
    """Create a new model file with the reference's random init."""
    check_output_path(model_path, "--model", force, inputs=[("the --tokenizer-data file", tokenizer_data),
                                                          ("the --tokenizer-from file", tokenizer_from)])
    lock_model_file(model_path, "init")
    tok = build_tokenizer_from_flags(tokenizer, tokenizer_data, case_sensitive, reserve_tokens, max_vocab,
                                     tokenizer_from)
    hp = make_hyperparameters(tok.vocab_size, num_tokens, embedding_degree, num_layers, num_heads, pos_enc)
    check_new_model_memory(hp, "; choose a smaller --num-tokens, --embedding-degree or --num-layers")
    from femtogpt.io.checkpoint import create

    ckpt = create(hp, tok, seed)
    save_checkpoint(ckpt, model_path)
    click.echo(f"Successfully initialized a model with {hp.num_params():,} parameters "
               f"({tok.summary()}) in {model_path}")


def _settings(given, train_state, keep_best):
    """The run's settings (train/settings.py settings_for_run: the flags given, else the file's, else
    the defaults, checked together) and the names taken from the file; says what a given flag changed."""
    from femtogpt.train.settings import as_flags, settings_for_run

    stored = train_state.get("settings", {})
    changed = [name for name in given if name in stored and stored[name] != given[name]]
    if changed:
        click.echo("Changed from the settings stored in the model file: " + ", ".join(
            f"{as_flags(stored, [name])} -> {as_flags(given, [name]).split(' ', 1)[1]}" for name in changed))
    try:
        settings, from_file, notes = settings_for_run(given, stored)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if keep_best and not settings["val_fraction"]:
        raise UserError("--keep-best needs --val-fraction: the best model is the one with the lowest "
                        "validation loss")
    return settings, from_file


def _check_training_memory(model_path, given):
    """Refuse, before the model is loaded, a batch this machine cannot train the model at (with the
    settings the run will use). A file that cannot be read is left to the loader to report."""
    from femtogpt.io.model_file import ModelFileError, peek_header
    from femtogpt.train.settings import batch_shape, resolve

    try:
        header = peek_header(model_path)
    except ModelFileError:
        return
    settings, _ = resolve(given, header["train_state"].get("settings", {}))
    batch_size, units = batch_shape(settings)
    import numba

    what = (f"--batch-size {settings['batch_size']}" + (f" x --grad-accum {settings['grad_accum']}"
                                                         if settings["grad_accum"] > 1 else ""))
    check_model_memory(header["hyperparameters"], batch_size, f"{what}: training {model_path}",
                       dropout=settings["dropout"] > 0, hint="; try a smaller --batch-size", units=units,
                       workers=numba.get_num_threads())


def _read_config(ctx, param, path):
    """--config FILE.toml: its keys (train's options, with dashes or underscores) become the defaults
    of this run's flags, so flags on the command line override it; checked like the flags."""
    if path is None:
        return
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}", ctx, param) from None
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{path} is not valid TOML: {exc}", ctx, param) from None
    names = {opt.lstrip("-").replace("-", "_"): p.name  # "batch_size" and "model" -> model_path
             for p in ctx.command.params if p.name != "config" for opt in p.opts}
    options = {}
    for key, value in values.items():
        name = names.get(key.replace("-", "_"))
        if name is None or isinstance(value, (dict, list)):
            raise click.BadParameter(f"{path}: {key!r} is not an option of train with one value "
                                     f"(options: {', '.join(sorted(n.replace('_', '-') for n in names))})",
                                     ctx, param)
        options[name] = value
    ctx.default_map = {**(ctx.default_map or {}), **options}


@click.command()
@click.option("--config", type=click.Path(dir_okay=False), callback=_read_config, is_eager=True,
              expose_value=False, help="A TOML file setting any of these options (flags given override it).")
@model_option()
@click.option("--dataset", default="dataset.txt", show_default=True, type=click.Path(),
              help="A text file, or a directory of text files.")
@click.option("--steps", type=click.IntRange(1, MAX_STEPS), default=100_000, help="Steps in this invocation.")
@training_settings_options  # --batch-size ... --grad-accum (cli/common.py; grow takes them too)
@click.option("--seed", type=SEED, default=None,
              help="Seed for batches and dropout (negative seeds are refused) [default: the file's seed].")
@click.option("--save-every", type=click.IntRange(0, MAX_STEPS), default=100,
              help="Save every N steps (0: by time and at the end only).")
@click.option("--save-minutes", type=FiniteFloat(0.0, 1e6), default=10.0, show_default=True,
              help="Also save when this many minutes have passed since the last save (0: off).")
@click.option("--keep-best", is_flag=True,
              help="Also save MODEL.best.dat (the model's name with .best) at every new lowest validation "
                   "loss; needs --val-fraction.")
@click.option("--val-fraction", type=FiniteFloat(0.0, 1.0, max_open=True), default=0.0,
              help="Hold out this tail fraction of the dataset for validation.")
@click.option("--eval-every", type=click.IntRange(0, MAX_STEPS), default=0,
              help="Validation loss every N steps (needs --val-fraction; default 100 when it is set).")
@click.option("--sample-every", type=click.IntRange(0, MAX_STEPS), default=0,
              help="Print a sample from the model every N steps (0: never).")
@click.option("--sample-len", type=click.IntRange(1, MAX_GENERATED), default=100, show_default=True,
              help="Tokens per sample.")
@click.option("--track-every", type=click.IntRange(0, MAX_STEPS), default=0,
              help="Every N steps record training statistics in the model file: gradient norms and "
                   "update-to-weight ratios per tensor group, the residual stream's RMS per layer "
                   "(see `plot --stat`; the result is bitwise the same; 0: never).")
@click.option("--quiet", is_flag=True, help="No progress lines (samples, validation and the final line still print).")
@click.option("--reset-optimizer", is_flag=True, help="Drop the optimizer state first (warm-up restarts).")
@click.option("--threads", type=THREADS, default=None,
              help="Worker threads, at most the CPUs this process may use [default: one per physical core].")
@interruptible
def train(model_path, dataset, steps, seed, save_every, save_minutes, keep_best, sample_every, sample_len,
          track_every, quiet, reset_optimizer, threads, interrupts, **given):
    """Train the model on a dataset, resuming exactly from the file's state.

    \b
    The settings (--batch-size, --units, --grad-accum, --dropout, --lr, --min-lr, --warmup,
    --decay-steps, --schedule, --weight-decay, --beta1, --beta2, --eps, --grad-clip,
    --val-fraction, --eval-every) are stored in the model file: a setting not given takes the value
    the last run stored, so `femtogpt train` alone continues a run as it was started. The defaults
    shown apply to a model's first run.
    Ctrl-C once: finish the current step, save, exit 130. Twice: abort without saving.
    Before the first step, Ctrl-C stops at once and leaves the file unchanged.
    Another process writing the same model file meanwhile is refused.
    The same --seed gives the same result whether run in one go or split across invocations.
    """
    group = process_group()  # None for one process; several under mpiexec
    lead = quiet_unless_lead(group)  # the process that reads and writes the model file and prints
    if not lead:
        interrupts.voice = False
    # Numba's threads for this run (at most its pool); GEMMs follow, BLAS stays on one
    use_engine(threads or threads_per_process(group))
    ctx = click.get_current_context()
    given = {name: value for name, value in given.items()  # the settings flags on the command line
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
    with together(group):
        if not Path(dataset).exists():
            raise UserError(f"--dataset {dataset}: no such file or directory")
        if lead:
            if Path(model_path).exists():
                check_output_path(model_path, "--model", force=True)  # its saves must be able to land
            lock_model_file(model_path, "train")  # held from before loading to after the last save
            _check_training_memory(model_path, given)
            model_bytes = read_model_bytes_or_fail(model_path)
    if group is not None:  # every process builds the model from process 0's bytes of the file
        model_bytes = group.broadcast(model_bytes if lead else None)
    with together(group):
        ckpt = open_checkpoint(model_path, model_bytes)
        settings, from_file = _settings(given, ckpt.train_state, keep_best)
    del model_bytes
    from femtogpt.text.fingerprint import dataset_fingerprint
    from femtogpt.train.best import BestFileError, best_file_path, previous_best_loss, save_best
    from femtogpt.train.loop import run_training
    from femtogpt.train.precompile import warm_up
    from femtogpt.train.progress import TrainDisplay
    from femtogpt.train.settings import as_flags, optimizer_config, train_options, units_note

    live = sys.stdout.isatty() and not quiet
    with together(group):
        tokens = load_dataset_tokens(ckpt.tokenizer, dataset, live)
    if reset_optimizer:
        ckpt.reset_optimizer()
    ckpt.ensure_optimizer(optimizer_config(settings))
    ckpt.train_state["settings"] = settings  # saved with the first step: the next run's defaults
    options = train_options(settings, steps, ckpt.seed if seed is None else seed, save_every=save_every,
                            save_minutes=save_minutes, sample_every=sample_every, sample_len=sample_len,
                            track_every=track_every)
    batch_size, units, val_fraction = options.batch_size, options.units, options.val_fraction
    dataset_info = {"dataset": str(dataset), "dataset_hash": dataset_fingerprint(dataset)}
    if group is not None:
        check_same_inputs(group, dataset, dataset_info["dataset_hash"], tokens, ckpt.model, ckpt.optimizer)
        dataset_info["processes"] = group.size
    best_path, best_loss = None, math.inf
    if keep_best and lead:
        best_path = best_file_path(model_path)
        lock_model_file(best_path, "train")
        try:
            best_loss = previous_best_loss(best_path, ckpt.logs, dataset_info["dataset_hash"], val_fraction,
                                           note=click.echo)
        except BestFileError as exc:
            raise UserError(str(exc)) from None
    hp = ckpt.hp
    import numba

    processes = "" if group is None else f" in each of {group.size} processes"
    if from_file:
        click.echo(f"Resuming with the settings stored in {model_path}: {as_flags(settings, from_file)}")
    click.echo(f"Model {model_path}: {hp.num_params():,} parameters, step {ckpt.step}; "
               f"dataset {dataset}: {len(tokens):,} tokens; {batch_size}x{hp.num_tokens} tokens per step "
               f"in {min(units, batch_size)} units; {numba.get_num_threads()} threads{processes}")
    idle_note = units_note(numba.get_num_threads(), min(units, batch_size) // (group.size if group else 1))
    if idle_note and lead:
        click.echo(idle_note)
    warm_up(spinner=live)
    display = TrainDisplay(steps, ckpt.step, batch_size * hp.num_tokens, live=live, quiet=quiet or not lead)
    interrupts.training(ckpt)
    try:
        result = run_training(ckpt, tokens, options, (lambda: interrupts.save(ckpt, model_path)) if lead else
                              (lambda: None), display, should_stop=lambda: interrupts.requested,
                              dataset_info=dataset_info,
                              save_best=best_path and (lambda: save_best(ckpt, best_path, warn=_warn)),
                              best_loss=best_loss, group=group)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    interrupts.phase = "done"
    if result.failure:
        raise UserError(f"{result.failure}; stopped, and {model_path} keeps the last good weights "
                        f"(step {ckpt.step}). Try a lower --lr.")
    if result.stopped and not result.steps:
        click.echo(f"Interrupted before training started; {model_path} is unchanged.", err=True)
        sys.exit(130)
    click.echo(("Stopped (Ctrl-C). " if result.stopped else "") +
               f"Saved {model_path} at step {ckpt.step} (loss {result.last_loss:.4f}).")
    if best_path is not None:
        if result.best_step is not None:
            click.echo(f"Best validation loss {result.best_loss:.4f} at step {result.best_step}: saved in {best_path}.")
        elif math.isfinite(best_loss):
            click.echo(f"No validation loss below {best_path}'s {best_loss:.4f}; it is unchanged.")
    if result.stopped or interrupts.requested:
        sys.exit(130)


@click.command(name="reset-optimizer")
@click.option("--input", "--model", "input_path", cls=HiddenAliases, default="model.dat", show_default=True,
              type=click.Path(dir_okay=False), help="Model whose optimizer state to drop.")
@click.option("--output", "output_path", default=None, type=click.Path(dir_okay=False),
              help="Where to write it [default: --input, in place].")
@click.option("--force", is_flag=True, help="Overwrite an existing --output other than --input.")
def reset_optimizer(input_path, output_path, force):
    """Drop the optimizer state (moments and step); the next train restarts warm-up."""
    output_path = input_path if output_path is None else output_path
    check_output_path(output_path, "--output", force or same_file(input_path, output_path))
    lock_model_file(output_path, "reset-optimizer")  # the input too, when it is the same file
    ckpt = open_checkpoint(input_path)
    had = ckpt.optimizer is not None
    ckpt.reset_optimizer()
    save_checkpoint(ckpt, output_path)
    size = Path(output_path).stat().st_size
    into = "" if same_file(input_path, output_path) else f" into {output_path}"
    click.echo(f"Reset the optimizer of {input_path}" + ("" if had else " (it had none)") +
               f"{into}; the file is now {size:,} bytes.")


COMMANDS = [init, train, reset_optimizer]
