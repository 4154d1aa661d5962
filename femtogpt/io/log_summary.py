"""Summaries of a model's logs: what `info` prints instead of 10,000 TrainStep lines.

The logs were validated by the loader (io/logs.py: each known kind's fields typed); their strings, and
everything of a kind this version does not know, still come from a file, so `describe` escapes them.
"""
from femtogpt.io.logs import EVAL, TRACK, TRAIN_STEP, expanded
from femtogpt.text.printable import printable


def summarize_logs(logs):
    """A list of runs: consecutive logs of one kind merged; TrainStep runs give steps and losses."""
    out = []
    for log in expanded(logs):
        kind = log.get("kind")
        if kind == TRAIN_STEP:
            if out and out[-1]["kind"] == "TrainSteps":
                run = out[-1]
            else:
                run = {"kind": "TrainSteps", "count": 0, "first_step": log.get("step"),
                       "first_loss": log.get("loss"), "elapsed_ms": 0}
                out.append(run)
            run["count"] += 1
            run["last_step"], run["last_loss"] = log.get("step"), log.get("loss")
            run["elapsed_ms"] += int(log.get("elapsed_ms", 0))
        elif kind == EVAL:
            if out and out[-1]["kind"] == "TrainSteps":
                out[-1]["last_val_loss"] = log.get("val_loss")
        elif kind == TRACK:  # recorded statistics (plot --stat): counted with their run of steps
            if out and out[-1]["kind"] == "TrainSteps":
                out[-1]["tracked"] = out[-1].get("tracked", 0) + 1
        else:
            out.append({k: v for k, v in log.items()})
    return out


def describe(entry):
    """One human line for a summarised log entry."""
    kind = entry["kind"]
    if kind == "TrainSteps":
        val = f", val {entry['last_val_loss']:.4f}" if entry.get("last_val_loss") is not None else ""
        tracked = f", statistics at {entry['tracked']} steps" if entry.get("tracked") else ""
        return (f"{entry['count']} steps ({entry['first_step']}..{entry['last_step']}), loss "
                f"{entry['first_loss']:.4f} -> {entry['last_loss']:.4f}{val}, "
                f"{entry['elapsed_ms'] / 1000:.1f}s{tracked}")
    fields = ", ".join(f"{printable(k, 40)}={printable(v, 80)}" for k, v in entry.items()
                       if k not in ("kind", "id", "hyperparameters", "track_names"))
    short_id = printable(str(entry.get("id", ""))[:8])
    return f"{printable(kind, 40)}" + (f" ({fields})" if fields else "") + f"  [{short_id}]"
