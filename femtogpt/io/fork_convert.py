"""A Rust fork model (.dat, bincode) as a femtogpt Checkpoint: tensors, optimizer moments, tokenizer
(ids kept) and logs (ids kept, so lineage between imported models still works).

Log fields are renamed to ours (TrainStep avg_loss/elapsed -> loss/elapsed_ms, plus the optimizer
step it ended and the reference schedule's lr at it). The fork's tokenizer becomes a Hugging Face
Unigram over the same strings: for character vocabularies (every fixture) it encodes exactly as the
fork; for the fork's "BPE" vocabularies it picks the fewest tokens where the fork matched greedily.

Before anything is allocated the hyperparameters are held to the file, as for our own files: as many
tensors as they call for (Python ints, before a name is built), each of the shape they call for, as many
tokens as vocab_size, and a model that fits in memory; any defect is one ForkFileError line.
"""
from femtogpt.config import Hyperparameters, OptimizerConfig
from femtogpt.engine.params import Parameters, reference_names
from femtogpt.io.checkpoint import assemble, build_bytes
from femtogpt.io.fork_reader import ForkFileError, read_fork_model
from femtogpt.io.logs import INIT, INSERT_LAYER, RESET_OPTIMIZER, TRAIN_SESSION, TRAIN_STEP
from femtogpt.io.model_schema import check_count, tensor_shapes
from femtogpt.model.memory import check_fits
from femtogpt.text.tokenizer_files import from_fork_tokens


def convert_logs(fork_logs, schedule=OptimizerConfig()):
    """Fork logs with our field names; the optimizer step restarts where the fork reset it."""
    logs, step = [], 0
    for log in fork_logs:
        kind, new = log["kind"], {"id": log["id"], "kind": log["kind"]}
        if kind == INIT:
            new["hyperparameters"] = dict(log["hyperparameters"])
        elif kind == TRAIN_SESSION:
            new.update(dataset=log["file"], dataset_hash=log["file_hash"], dropout=log["dropout"],
                       hash_kind="fork")
        elif kind == TRAIN_STEP:
            new.update(step=step + 1, loss=log["avg_loss"], elapsed_ms=log["elapsed"],
                       lr=schedule.learning_rate(step))
            step += 1
        elif kind == INSERT_LAYER:
            new["index"] = log["index"]
        elif kind == RESET_OPTIMIZER:
            step = 0
        logs.append(new)
    return logs


def checked_hyperparameters(fork, name):
    """The fork model's Hyperparameters, held to its own tensors and tokens (see the module docstring)."""
    h = fork.hyperparameters
    try:
        hp = Hyperparameters(vocab_size=h["vocab_size"], num_tokens=h["num_tokens"],
                             embedding_degree=h["embedding_degree"], num_layers=h["num_layers"],
                             num_heads=h["num_heads"], pos_enc=fork.pos_enc).validate()
        if h["head_size"] != hp.head_size:
            raise ValueError(f"head_size is {h['head_size']}, expected {hp.head_size} (embedding_degree / num_heads)")
        check_count(fork.tensors, hp, "tensor")       # before a name is built
        _check_shapes(fork.tensors, tensor_shapes(hp), "tensor")
        if fork.optimizer_state:
            _check_shapes(fork.optimizer_state, {f"{n}_{key}": s for n, s in tensor_shapes(hp).items()
                                                 for key in ("m", "v")}, "optimizer state")
        if len(fork.tokens) != hp.vocab_size:
            raise ValueError(f"the tokenizer has {len(fork.tokens)} tokens but vocab_size is {hp.vocab_size}")
        check_fits(build_bytes(hp, bool(fork.optimizer_state)))
    except ValueError as e:            # a bad value, a schema defect, ModelTooLarge: all one line
        raise ForkFileError(f"{name}: {e}") from None
    return hp


def _check_shapes(arrays, shapes, what):
    missing = [n for n in shapes if n not in arrays]
    if missing:
        raise ValueError(f"the {what} has no {missing[0]}" + (f" (and {len(missing) - 1} more missing)"
                                                              if len(missing) > 1 else ""))
    for n, shape in shapes.items():
        if arrays[n].shape != shape:
            raise ValueError(f"{what} {n} has shape {list(arrays[n].shape)}, expected {list(shape)}")


def checkpoint_from_fork(path):
    """Read a fork .dat file (ForkFileError on any defect) and build the equivalent Checkpoint."""
    return checkpoint_from_fork_model(read_fork_model(path), str(path))


def checkpoint_from_fork_model(fork, name):
    """The Checkpoint of a ForkModel read from the file `name` (ForkFileError when it does not hold up)."""
    hp = checked_hyperparameters(fork, name)
    tokenizer = from_fork_tokens(fork.tokens, fork.unk_id, fork.case_sensitive, name=name)
    params = Parameters(hp).load(fork.tensors)
    optimizer = None
    if fork.optimizer_state:
        optimizer = {"step": fork.optimizer_step,
                     **{key: {name: fork.optimizer_state[name + "_" + key] for name in reference_names(hp)}
                        for key in ("m", "v")}}
    return assemble(hp, params, tokenizer, convert_logs(fork.logs), {"seed": 0}, optimizer)


def model_file_or_fork(path):
    """A femtogpt ModelFile from `path`: a femtogpt model file, or else the Rust fork's .dat file read
    as `import-fork` would. Raises ModelFileError for a femtogpt file that is damaged (or a file of
    neither kind), and ForkFileError or TokenizerError for a fork file that does not hold up."""
    from pathlib import Path

    from femtogpt.io.model_file import ModelFileError, load_model_file

    try:
        return load_model_file(Path(path))
    except ModelFileError as ours:
        if not ours.foreign:
            raise                 # a femtogpt model file, damaged or invalid: say what is wrong with it
        try:
            fork = read_fork_model(path)
        except ForkFileError:
            raise ours from None  # neither kind: report it as a femtogpt file
        return checkpoint_from_fork_model(fork, str(path)).to_model_file()
