"""A Rust fork model (.dat, bincode) as a femtogpt Checkpoint: tensors, optimizer moments, tokenizer
(ids kept) and logs (ids kept, so lineage between imported models still works).

Log fields are renamed to ours (TrainStep avg_loss/elapsed -> loss/elapsed_ms, plus the optimizer
step it ended and the reference schedule's lr at it). The fork's tokenizer becomes a Hugging Face
Unigram over the same strings: for character vocabularies (every fixture) it encodes exactly as the
fork; for the fork's "BPE" vocabularies it picks the fewest tokens where the fork matched greedily.
"""
from femtogpt.config import Hyperparameters, OptimizerConfig
from femtogpt.engine.params import Parameters, reference_names
from femtogpt.io.checkpoint import assemble
from femtogpt.io.fork_reader import read_fork_model
from femtogpt.io.logs import INIT, INSERT_LAYER, RESET_OPTIMIZER, TRAIN_SESSION, TRAIN_STEP
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


def session_from_fork(path):
    """Read a fork .dat file (ForkFileError on any defect) and build the equivalent Checkpoint."""
    fork = read_fork_model(path)
    h = fork.hyperparameters
    hp = Hyperparameters(vocab_size=h["vocab_size"], num_tokens=h["num_tokens"],
                         embedding_degree=h["embedding_degree"], num_layers=h["num_layers"],
                         num_heads=h["num_heads"], pos_enc=fork.pos_enc).validate()
    params = Parameters(hp).load(fork.tensors)
    tokenizer = from_fork_tokens(fork.tokens, fork.unk_id, fork.case_sensitive, name=str(path))
    optimizer = None
    if fork.optimizer_state:
        optimizer = {"step": fork.optimizer_step,
                     **{key: {name: fork.optimizer_state[name + "_" + key] for name in reference_names(hp)}
                        for key in ("m", "v")}}
    return assemble(hp, params, tokenizer, convert_logs(fork.logs), {"seed": 0}, optimizer)
