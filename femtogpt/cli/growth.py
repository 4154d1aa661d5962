"""Growing and comparing models: init-with, insert-layer, insert-head, add-tokens, replace-reserved,
compare.

The commands parse, call femtogpt.growth.surgery / heads / tokens / compare and print; only click is imported at
module level (`femtogpt --help` must not load the engine).
"""
import click

from femtogpt.cli.common import (UserError, build_tokenizer_from_flags, check_new_model_memory,
                                 check_output_path, open_checkpoint, same_file, save_checkpoint,
                                 tokenizer_options)
from femtogpt.cli.flags import MAX_LIST, MAX_VOCAB, SEED, HiddenAliases
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
    _echo_optimizer(report.optimizer, report.step, "the moved tensors keep their moments, the new layer's "
                    "start at zero")


def _echo_optimizer(how, step, kept):
    """The last line of a surgery command: what became of the optimizer (`how`: kept, reset, none)."""
    click.echo({"kept": f"Optimizer: kept (step {step}; {kept})",
                "reset": "Optimizer: reset (warm-up restarts at lr 0)",
                "none": "Optimizer: none stored"}[how])


@click.command(name="insert-head")
@click.option("--input", "input_path", default="model.dat", show_default=True,
              type=click.Path(dir_okay=False), help="Model to grow.")
@click.option("--output", "output_path", default="inserted.dat", show_default=True,
              type=click.Path(dir_okay=False), help="Where to write the grown model (may be --input).")
@click.option("--all-layers", is_flag=True, help="Add the head to every layer (required: see above).")
@click.option("--layer", type=click.IntRange(min=0), default=None,
              help="Refused with the reason: every layer has the same number of heads.")
@click.option("--reset-optimizer", is_flag=True,
              help="Drop the optimizer state: warm-up restarts from lr 0.")
@click.option("--seed", type=SEED, default=None,
              help="Seed for the new head's q/k/v draws (negative seeds are refused) [default: random].")
@click.option("--force", is_flag=True, help="Overwrite an existing --output other than --input.")
def insert_head(input_path, output_path, all_layers, layer, reset_optimizer, seed, force):
    """Add one attention head to every layer; the model's output is unchanged at insertion.

    \b
    The new head (index H, the old head count) has the model's head size hs: its q, k, v are drawn
    N(0, 0.02) and its rows of proj_{l}_weights are zero, so it adds exactly nothing until training
    moves them (they get a gradient on the first step). The residual width E (embedding_degree) stays
    and every other value is kept bitwise; the attention width H*hs grows to (H+1)*hs, so after an
    insertion H*hs is no longer E (the fork's file format stores head_size and allows it). The model
    has one num_heads for all layers, so the head goes into every layer: give --all-layers (--layer L
    is refused, saying why).
    The optimizer moments of every old tensor and slice are kept, the new slices' start at zero and
    the step is kept (no warm-up restart). The logs record InsertHead.
    """
    if layer is not None and all_layers:
        raise UserError("--layer and --all-layers: give one (insert-head adds a head to every layer: --all-layers)")
    if layer is None and not all_layers:
        raise UserError("give --all-layers: insert-head adds one head to every layer (see femtogpt insert-head --help)")
    check_output_path(output_path, "--output", force or same_file(input_path, output_path))
    lock_model_file(output_path, "insert-head")  # the input too, when it is the same file
    ckpt = open_checkpoint(input_path)
    hp = ckpt.hp
    L, H, hs, D = hp.num_layers, hp.num_heads, hp.head_size, hp.attention_width
    if layer is not None:
        if layer >= L:
            raise UserError(f"--layer {layer}: {input_path} has {L} layers (0..{L - 1}); and insert-head "
                            f"adds a head to every layer anyway: use --all-layers")
        raise UserError(f"--layer {layer}: every layer of a model has the same number of heads (num_heads "
                        f"{H}), so insert-head adds a head to every layer at once: use --all-layers")
    from dataclasses import replace

    check_new_model_memory(replace(hp, num_heads=H + 1, head_size=hs))
    from femtogpt.growth.heads import insert_head as do_insert

    grown, report = do_insert(ckpt, seed=seed, reset_optimizer=reset_optimizer)
    save_checkpoint(grown, output_path)
    click.echo(f"Inserted head {H} (head size {hs}) into each of the {L} layers of {input_path}: {H} -> {H + 1} "
               f"heads, attention width {D} -> {D + hs} (embedding {hp.embedding_degree}), "
               f"{grown.hp.num_params():,} parameters, in {output_path}")
    _echo_optimizer(report.optimizer, report.step, "every old tensor and slice keeps its moments, the new "
                    "head's start at zero")


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


def _read_tokens_file(path):
    """The tokens of --tokens-file: a JSON array of strings, or else one token per line (line ends
    dropped, empty lines skipped); a token with a newline or edge spaces needs the JSON form."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise UserError(f"--tokens-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--tokens-file {path}: cannot be read as UTF-8 text ({exc.__class__.__name__})") from None
    if text.lstrip().startswith("["):
        try:
            tokens = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            raise UserError(f"--tokens-file {path}: starts with [ but is not a JSON array of strings") from None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise UserError(f"--tokens-file {path}: a JSON file must be an array of strings")
        return tokens
    return [line for line in text.splitlines() if line]


@click.command(name="add-tokens")
@click.option("--input", "input_path", default="model.dat", show_default=True,
              type=click.Path(dir_okay=False), help="Model whose vocabulary to grow.")
@click.option("--output", "output_path", default="added.dat", show_default=True,
              type=click.Path(dir_okay=False), help="Where to write the grown model (may be --input).")
@click.option("--token", "tokens", multiple=True, help="A token to add (repeat for several), e.g. ' hello'.")
@click.option("--tokens-file", type=click.Path(dir_okay=False),
              help="The tokens to add: a JSON array of strings, or one token per line.")
@click.option("--init", "init", type=click.Choice(["mean-of-pieces", "mean"]), default="mean-of-pieces",
              show_default=True,
              help="A new token's embedding row, head column and bias: the mean of those of the pieces the "
                   "old tokenizer spells it with, or of all tokens.")
@click.option("--force", is_flag=True, help="Overwrite an existing --output other than --input.")
def add_tokens(input_path, output_path, tokens, tokens_file, init, force):
    """Add tokens to a model's vocabulary: new ids V, V+1, ... with new rows of token_embedding and
    columns of head_map_*.

    \b
    Every other tensor, the old rows and columns and their optimizer moments are kept bitwise; the
    new rows' moments start at zero and the step is kept. Text without the new tokens encodes to the
    same ids as before. The logs record AddTokens.
    """
    if bool(tokens) == bool(tokens_file):
        raise UserError("give the tokens with --token (repeatable) or with --tokens-file, not both or neither")
    check_output_path(output_path, "--output", force or same_file(input_path, output_path),
                      inputs=[("the --tokens-file", tokens_file)])
    tokens = list(tokens) if tokens else _read_tokens_file(tokens_file)
    lock_model_file(output_path, "add-tokens")  # the input too, when it is the same file
    ckpt = open_checkpoint(input_path)
    from dataclasses import replace

    V = ckpt.hp.vocab_size
    check_new_model_memory(replace(ckpt.hp, vocab_size=V + len(tokens)))
    from femtogpt.growth.tokens import add_tokens as do_add
    from femtogpt.text.printable import quoted
    from femtogpt.text.tokenizer import TokenizerError

    try:
        grown, report = do_add(ckpt, tokens, init=init)
    except (ValueError, TokenizerError) as exc:
        raise UserError(str(exc)) from None
    save_checkpoint(grown, output_path)
    click.echo(f"Added {len(tokens)} token{'s' if len(tokens) > 1 else ''} to {input_path} "
               f"(vocab {V} -> {grown.hp.vocab_size}, {grown.hp.num_params():,} parameters) in {output_path}")
    for i, (t, pieces) in enumerate(zip(report.tokens, report.pieces)):
        how = f"the mean of its {len(pieces)} pieces {pieces}" if init == "mean-of-pieces" else "the mean of all rows"
        click.echo(f"  id {report.first_id + i}: {quoted(t)} (was {len(pieces)} tokens; new row: {how})")
    _echo_optimizer(report.optimizer, grown.step, "the new tokens' moments start at zero")


@click.command(name="replace-reserved")
@click.option("--input", "input_path", default="model.dat", show_default=True,
              type=click.Path(dir_okay=False), help="Model with reserved tokens (init --reserve-tokens).")
@click.option("--output", "output_path", default="replaced.dat", show_default=True,
              type=click.Path(dir_okay=False), help="Where to write it (may be --input).")
@click.option("--id", "token_id", type=click.IntRange(0, MAX_VOCAB), required=True,
              help="The id of the reserved token to replace.")
@click.option("--token", required=True, help="Its new string.")
@click.option("--special", is_flag=True,
              help="Never match it in text (it enters by id only, like <|endoftext|>); default: matched in text.")
@click.option("--force", is_flag=True, help="Overwrite an existing --output other than --input.")
def replace_reserved(input_path, output_path, token_id, token, special, force):
    """Turn a reserved token into a real one, keeping its id: no tensor changes (the fork's easy
    approach to a new token). The logs record ReplaceReserved."""
    check_output_path(output_path, "--output", force or same_file(input_path, output_path))
    lock_model_file(output_path, "replace-reserved")
    ckpt = open_checkpoint(input_path)
    from femtogpt.growth.tokens import replace_reserved as do_replace
    from femtogpt.text.printable import quoted
    from femtogpt.text.tokenizer import TokenizerError

    try:
        new = do_replace(ckpt, token_id, token, special=special)
    except (ValueError, TokenizerError) as exc:
        raise UserError(str(exc)) from None
    save_checkpoint(new, output_path)
    click.echo(f"Replaced reserved token {token_id} ({quoted(new.logs[-1]['reserved'])}) of {input_path} with "
               f"{quoted(token)}{' (special: never matched in text)' if special else ''} in {output_path}; "
               f"no tensor changed ({len(new.tokenizer.reserved)} reserved left)")


COMMANDS = [init_with, insert_layer, insert_head, add_tokens, replace_reserved, compare]
