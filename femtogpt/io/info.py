"""What `info` and `loss` report about a model file, read and verified by io/model_file.py.

`model_summary(path)` is the dict `info --json` prints, `summary_lines(summary)` its human form, and
`training_losses(path, limit)` the last TrainStep losses. Not here: printing (cli/info.py).
"""
from pathlib import Path

from femtogpt.config import TRAINING_SETTINGS, settings_as_flags
from femtogpt.io.log_summary import describe, summarize_logs
from femtogpt.io.logs import TRAIN_STEP, expanded
from femtogpt.io.model_file import load_model_file
from femtogpt.text.printable import printable


def model_summary(path):
    """Hyperparameters, parameter count, optimizer step, tokenizer, and the logs summarised by
    run, as JSON-ready values. Raises ModelFileError for a file that does not load."""
    mf = load_model_file(Path(path))
    steps = [log for log in expanded(mf.logs) if log.get("kind") == TRAIN_STEP]
    return _plain({
        "model": str(path),
        "file_size": Path(path).stat().st_size,
        "hyperparameters": mf.hp.to_dict(),
        "num_params": mf.hp.num_params(),
        "optimizer_step": mf.optimizer["step"] if mf.optimizer else None,
        "trained_steps": len(steps),
        "last_loss": steps[-1]["loss"] if steps else None,
        "tokenizer": {**(mf.tokenizer_meta or {}), "vocab_size": mf.hp.vocab_size},
        "seed": (mf.train_state or {}).get("seed"),
        "settings": (mf.train_state or {}).get("settings"),
        "history": summarize_logs(mf.logs),
    })


def _plain(value):
    # what a file may hold that JSON cannot (msgpack bytes in a field a newer femtogpt wrote) as a short note
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return f"<{len(value)} bytes>" if isinstance(value, bytes) else value


def summary_lines(summary):
    """The human-readable form of `model_summary`, one string per line."""
    hp, tok = summary["hyperparameters"], summary["tokenizer"]
    step, last = summary["optimizer_step"], summary["last_loss"]
    opt = "none (fresh or reset)" if step is None else f"step {step}"
    lines = [
        f"{summary['model']}: {summary['num_params']:,} parameters, {summary['file_size']:,} bytes",
        f"  vocab {hp['vocab_size']}, context {hp['num_tokens']}, embedding {hp['embedding_degree']}, "
        f"layers {hp['num_layers']}, heads {hp['num_heads']} (head size {hp['head_size']}), "
        f"positional encoding {hp['pos_enc']}",
        f"  tokenizer: {printable(tok.get('kind', '?'), 20)}, {hp['vocab_size']} tokens"
        + (", case-insensitive" if tok.get("case_insensitive") else ""),
        f"  optimizer: {opt}; trained {summary['trained_steps']} steps"
        + (f", last loss {last:.4f}" if summary["trained_steps"] else ""),
    ]
    if summary.get("settings"):
        changed = {k: v for k, v in summary["settings"].items()
                   if k in TRAINING_SETTINGS and v != TRAINING_SETTINGS[k][0]}
        lines.append(f"  training settings (a bare train resumes with them): seed {summary['seed']}"
                     + (f", {settings_as_flags(changed)}" if changed else "") + ", the rest default")
    lines.append("  history:")
    return lines + [f"    {describe(entry)}" for entry in summary["history"]]


def training_losses(path, limit):
    """The last `limit` training losses of a model file, oldest first (limit 0: all).
    Raises ModelFileError for a file that does not load."""
    losses = [log["loss"] for log in expanded(load_model_file(Path(path)).logs) if log.get("kind") == TRAIN_STEP]
    return losses[-limit:] if limit else losses
