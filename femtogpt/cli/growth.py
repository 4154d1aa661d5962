"""Growing and comparing models: init-with, insert-layer, compare.

The commands parse, call femtogpt.growth.surgery / femtogpt.growth.compare and print; only click is imported at
module level (`femtogpt --help` must not load the engine).
"""
import click

from femtogpt.cli.common import (UserError, build_tokenizer_from_flags, check_new_model_memory,
                                 check_output_path, open_checkpoint, same_file, save_checkpoint,
                                 tokenizer_options)
from femtogpt.cli.flags import MAX_LIST, SEED, HiddenAliases
from femtogpt.cli.common import lock_model_file


def _layer_patterns(names):
    """A short description of a list of tensor names: 'norm_{l}_*, head_{l}_{h}_{k,q,v}, ...'."""
    from femtogpt.growth.surgery import layer_of

    layers = sorted({layer_of(n) for n in names if layer_of(n) is not None})
    globals_ = [n for n in names if layer_of(n) is None]
    parts = []
    if layers:
        span = f"{layers[0]}..{layers[-1]}" if len(layers) > 1 else f"{layers[0]}"
        parts.append(f"every tensor of layers {span} (norm, head q/k/v, proj, atten_norm, "
                     f"feedforward1, feedforward2)")
    return parts + globals_


@click.command(name="init-with")
@click.option("--input", "--parent", "parent", cls=HiddenAliases, default="parent.dat", show_default=True,
              type=click.Path(dir_okay=False), help="Trained model whose body is copied (the parent).")
@click.option("--output", "--child", "child", cls=HiddenAliases, default="model.dat", show_default=True,
              type=click.Path(dir_okay=False), help="Model file to create (the child).")
@tokenizer_options
@click.option("--num-tokens", type=click.IntRange(min=1), default=None,
              help="Context length T of the child [default: the parent's].")
@click.option("--keep-shared-tokens", is_flag=True,
              help="Also copy the embedding row and output column of every token both vocabularies share.")
@click.option("--seed", type=SEED, default=None,
              help="Seed for the fresh tensors (negative seeds are refused) [default: random].")
@click.option("--force", is_flag=True, help="Overwrite an existing child file.")
def init_with(parent, child, tokenizer, tokenizer_data, case_sensitive, reserve_tokens, max_vocab, tokenizer_from,
              num_tokens, keep_shared_tokens, seed, force):
    """A new model for a new tokenizer whose body is copied from a trained parent.

    \b
    Copied (bitwise): every tensor but token_embedding and head_map_*. Fresh: those three, and the
    optimizer. E, L, H and the positional encoding come from the parent; T may change. The child's
    logs keep the parent's history, so `compare PARENT CHILD` sees the lineage.
    """
    check_output_path(child, "--output", force, inputs=[("the --input file", parent),
                                                   ("the --tokenizer-data file", tokenizer_data),
                                                   ("the --tokenizer-from file", tokenizer_from)])
    lock_model_file(child, "init-with")
    parent_ckpt = open_checkpoint(parent)
    tok = build_tokenizer_from_flags(tokenizer, tokenizer_data, case_sensitive, reserve_tokens, max_vocab,
                                     tokenizer_from)
    from dataclasses import replace

    check_new_model_memory(replace(parent_ckpt.hp, vocab_size=tok.vocab_size,
                                   num_tokens=num_tokens or parent_ckpt.hp.num_tokens),
                           "; choose a smaller --num-tokens or a smaller vocabulary")
    from femtogpt.growth.surgery import init_with as do_init_with

    try:
        child_ckpt, report = do_init_with(parent_ckpt, tok, num_tokens=num_tokens, seed=seed,
                                          keep_shared_tokens=keep_shared_tokens, parent_path=parent)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    save_checkpoint(child_ckpt, child)
    hp = child_ckpt.hp
    click.echo(f"Successfully initialized a model with {hp.num_params():,} parameters "
               f"({tok.summary()}) in {child}")
    click.echo(f"Copied from {parent}: {len(report.copied)} tensors, {report.copied_params:,} parameters: "
               + "; ".join(_layer_patterns(report.copied)))
    click.echo(f"Fresh: {', '.join(report.fresh)} ({report.fresh_params:,} parameters); "
               f"the optimizer starts fresh")
    if report.shared_tokens is not None:
        click.echo(f"Shared tokens: {report.shared_tokens} of the child's {hp.vocab_size} tokens are also in "
                   f"the parent's vocabulary; their token_embedding rows and head_map columns were copied")
    click.echo(f"Context length {hp.num_tokens}" +
               (f" (the parent's is {parent_ckpt.hp.num_tokens})"
                if hp.num_tokens != parent_ckpt.hp.num_tokens else " (as the parent)"))


@click.command(name="insert-layer")
@click.option("--input", "input_path", default="model.dat", show_default=True,
              type=click.Path(dir_okay=False), help="Model to grow.")
@click.option("--output", "output_path", default="inserted.dat", show_default=True,
              type=click.Path(dir_okay=False), help="Where to write the grown model (may be --input).")
@click.option("--insert-at", "index", type=click.IntRange(min=0), required=True,
              help="Index of the new layer: 0..L (L appends); layers from there on move up by one.")
@click.option("--init", "init", type=click.Choice(["near-identity", "random"]), default="near-identity",
              show_default=True,
              help="near-identity: starts as a no-op (LN gains 1, biases 0, zero proj and feedforward2); "
                   "random: the reference's init.")
@click.option("--reset-optimizer", is_flag=True,
              help="Drop the optimizer state (the reference does): warm-up restarts from lr 0.")
@click.option("--seed", type=SEED, default=None,
              help="Seed for the new layer's random draws (negative seeds are refused) [default: random].")
@click.option("--force", is_flag=True, help="Overwrite an existing --output other than --input.")
def insert_layer(input_path, output_path, index, init, reset_optimizer, seed, force):
    """Grow a model by one layer at --insert-at.

    \b
    The optimizer moments of every moved tensor move with it and the step is kept (no warm-up
    restart); the new layer's moments start at zero. The logs record InsertLayer.
    """
    check_output_path(output_path, "--output", force or same_file(input_path, output_path))
    lock_model_file(output_path, "insert-layer")  # the input too, when it is the same file
    ckpt = open_checkpoint(input_path)
    L = ckpt.hp.num_layers
    if index > L:
        raise UserError(f"--insert-at {index}: {input_path} has {L} layers; use 0..{L} ({L} appends)")
    from dataclasses import replace

    check_new_model_memory(replace(ckpt.hp, num_layers=L + 1))
    from femtogpt.growth.surgery import insert_layer as do_insert

    grown, report = do_insert(ckpt, index, init=init, seed=seed, reset_optimizer=reset_optimizer)
    save_checkpoint(grown, output_path)
    click.echo(f"Inserted a {init} layer at index {index} of {input_path}: {L} -> {L + 1} layers, "
               f"{grown.hp.num_params():,} parameters, in {output_path}")
    if L > index:
        moves = ", ".join(f"{l} -> {l + 1}" for l in range(index, L))
        click.echo(f"Moved layers: {moves}")
    click.echo({"kept": f"Optimizer: kept (step {report.step}; the moved tensors keep their moments, "
                        f"the new layer's start at zero)",
                "reset": "Optimizer: reset (warm-up restarts at lr 0)",
                "none": "Optimizer: none stored"}[report.optimizer])


def _fmt_cos(entry):
    if entry["cosine"] is None:
        return f"n/a ({entry['reason']})"
    return f"{entry['cosine']:.6f}"


@click.command()
@click.argument("model_a", type=click.Path(dir_okay=False))
@click.argument("model_b", type=click.Path(dir_okay=False))
@click.option("--limit", type=click.IntRange(0, MAX_LIST), default=10, show_default=True,
              help="Lines per section (tensors, tokens); 0: all (as everywhere). Also applies to --json.")
@click.option("--reverse", is_flag=True, help="Most similar first instead of least similar.")
@click.option("--by-name", is_flag=True,
              help="Match layers by name even when the history shows insert-layer renumbered them.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def compare(model_a, model_b, limit, reverse, by_name, as_json):
    """The lineage of two models, then the cosine similarity of each tensor and of each token's
    embedding per head, least similar first.

    \b
    Either file may also be a model file of the Rust fork (.dat), read as `import-fork` would.
    Models of different shapes are compared on the tensors present in both with the same shape; the
    others are listed. All-zero tensors print n/a.
    """
    import json

    from femtogpt.growth.compare import compare_models, lineage_sentences
    from femtogpt.io.fork_convert import model_file_or_fork
    from femtogpt.io.fork_reader import ForkFileError
    from femtogpt.io.model_file import ModelFileError
    from femtogpt.text.tokenizer import TokenizerError

    try:
        mf_a, mf_b = model_file_or_fork(model_a), model_file_or_fork(model_b)
        result = compare_models(mf_a, mf_b, reverse=reverse, align_layers=not by_name)
    except (ModelFileError, ForkFileError, TokenizerError) as exc:
        raise UserError(str(exc)) from None
    cut = (lambda xs: xs[:limit]) if limit else (lambda xs: xs)
    sentences = lineage_sentences(result.lineage, model_a, model_b)
    if as_json:
        data = result.to_dict()
        data["lineage"]["sentences"] = sentences
        data["tensors"], data["tokens"] = cut(data["tensors"]), cut(data["tokens"])
        data["models"] = [model_a, model_b]
        click.echo(json.dumps(data, indent=2))
        return
    for line in sentences:
        click.echo(line)
    for key, (va, vb) in result.hyperparameters_differ.items():
        click.echo(f"{key} differs: {va} in {model_a}, {vb} in {model_b}")
    if result.layer_map:
        moved = ", ".join(f"{a} -> {b}" for a, b in sorted(result.layer_map.items()) if a != b)
        click.echo(f"Layers matched through the insert-layer history ({model_a}'s layer -> {model_b}'s): {moved}")
    for e in cut(result.tensors):
        name = e["name"] + (f" ~ {e['name_b']}" if "name_b" in e else "")
        click.echo(f"key: {name}, cosine: {_fmt_cos(e)}")
    for e in cut(result.tokens):
        other = f" ({e['token_id_b']} in {model_b})" if "token_id_b" in e else ""
        click.echo(f"token_id: {e['token_id']}{other}, token: {e['token']!r}, head: {e['head']}, "
                   f"cosine: {_fmt_cos(e)}")
    for note in result.notes:
        click.echo(f"Note: {note}")
    if result.only_in_a:
        click.echo(f"Only in {model_a} ({len(result.only_in_a)}): {', '.join(result.only_in_a)}")
    if result.only_in_b:
        click.echo(f"Only in {model_b} ({len(result.only_in_b)}): {', '.join(result.only_in_b)}")
    for m in result.shape_mismatch:
        name = m["name"] + (f" ~ {m['name_b']}" if "name_b" in m else "")
        click.echo(f"Shape differs: {name} is {m['shape_a']} in {model_a}, {m['shape_b']} in {model_b}")


COMMANDS = [init_with, insert_layer, compare]
