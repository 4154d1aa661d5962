"""What learning changed between two models: their lineage, and cosine similarities (reference §1.11).

Here: `lineage` (from the two log-id lists), `lineage_sentences` (the reference's sentences),
`compare_models` (everything as plain data, sorted); the `compare` command prints. Differences from
the reference on purpose: the step counts have no off-by-one (the reference counts the last shared
log on both sides); models that share no history are "unrelated" instead of a panic; models of
different shapes compare on the tensors present in both with equal shapes and list the rest; after
insert-layer, layers are matched through the history (A's layer 1 is B's layer 2 after an insertion
at 1), not by name; all-zero tensors give "n/a" (None), not NaN; token embeddings of two different
vocabularies are compared on the tokens both spell the same.

Log fields and token strings come from the files: the sentences escape them (text/printable.py), and
both tokenizers are rebuilt and checked against their model's vocab_size before anything is compared.
"""
from dataclasses import asdict, dataclass, field

import numpy as np

from femtogpt.growth.surgery import layer_of, rename_layer, shared_token_pairs
from femtogpt.io.logs import (ADD_TOKENS, EVAL, INIT_WITH, INSERT_HEAD, INSERT_LAYER, REPLACE_RESERVED,
                              RESET_OPTIMIZER, TRACK, TRAIN_SESSION, TRAIN_STEP, expanded)
from femtogpt.text.printable import printable

TRAINING_KINDS = (TRAIN_SESSION, TRAIN_STEP, EVAL, TRACK)  # everything else after a divergence is an "event"


# ------------------------------------------------------------------------------------ lineage

@dataclass
class Lineage:
    relation: str           # "identical", "a_parent_of_b", "b_parent_of_a", "siblings" or "unrelated"
    shared_logs: int        # length of the common prefix of the two log-id lists
    shared_steps: int       # TrainStep logs in that prefix
    steps_a: int            # TrainStep logs of A after the prefix
    steps_b: int
    events_a: list = field(default_factory=list)   # A's other logs after the prefix (InsertLayer, ...)
    events_b: list = field(default_factory=list)


def lineage(logs_a, logs_b):
    """Lineage from the logs: the longest common prefix of the id lists is the shared history."""
    p = 0
    for la, lb in zip(logs_a, logs_b):
        if la.get("id") != lb.get("id"):
            break
        p += 1
    rest_a, rest_b = logs_a[p:], logs_b[p:]
    if p == 0:
        relation = "unrelated"
    elif not rest_a and not rest_b:
        relation = "identical"
    elif not rest_a:
        relation = "a_parent_of_b"
    elif not rest_b:
        relation = "b_parent_of_a"
    else:
        relation = "siblings"
    steps = lambda logs: sum(1 for log in logs if log.get("kind") == TRAIN_STEP)  # noqa: E731
    events = lambda logs: [log for log in logs if log.get("kind") not in TRAINING_KINDS]  # noqa: E731
    return Lineage(relation, p, steps(logs_a[:p]), steps(rest_a), steps(rest_b), events(rest_a), events(rest_b))


def describe_event(log):
    """A log after the shared history in a few words; what comes from the file is escaped."""
    kind = log.get("kind")
    if kind == INSERT_LAYER:
        init = log.get("init")
        return f"insert-layer at {log.get('index')}" + (f" ({printable(init, 40)})" if init else "")
    if kind == INSERT_HEAD:
        return f"insert-head (head {printable(log.get('head'), 20)} in every layer)"
    if kind == RESET_OPTIMIZER:
        return "reset-optimizer"
    if kind == ADD_TOKENS:
        tokens = log.get("tokens")
        count = len(tokens) if isinstance(tokens, list) else None
        return "add-tokens" + (f" ({count} token{'s' if count != 1 else ''})" if count is not None else "")
    if kind == REPLACE_RESERVED:
        return f"replace-reserved (id {printable(log.get('token_id'), 20)})"
    if kind == INIT_WITH:
        hp = log.get("hyperparameters")
        vocab = hp.get("vocab_size") if isinstance(hp, dict) else None
        return "init-with" + (f" (a new vocabulary of {printable(vocab, 20)} tokens)" if vocab else "")
    return printable(kind, 40)


def lineage_sentences(lin, a, b):
    """The lineage in the reference's sentences, A and B being the names to print."""
    if lin.relation == "unrelated":
        return [f"{a} and {b} are unrelated."]
    if lin.relation == "identical":
        return [f"{a} and {b} have gone through the same training session. There's nothing to compare.",
                f"The parent has been trained for {lin.shared_steps} steps."]
    if lin.relation == "a_parent_of_b":
        out = [f"{a} is parent of {b}.", f"{b} is {lin.steps_b}-steps further trained version of {a}"]
    elif lin.relation == "b_parent_of_a":
        out = [f"{b} is parent of {a}.", f"{a} is {lin.steps_a}-steps further trained version of {b}"]
    else:
        out = [f"{a} and {b} have the same parent.",
               f"{a} is {lin.steps_a}-steps further trained version of the parent.",
               f"{b} is {lin.steps_b}-steps further trained version of the parent."]
    for name, events in ((a, lin.events_a), (b, lin.events_b)):
        if events:
            out.append(f"After the shared history, {name} also went through: "
                       f"{', '.join(describe_event(e) for e in events)}.")
    return out


def layer_alignment(lin, L_a, L_b):
    """{A's layer: B's layer} matched through the InsertLayer events after the shared history, or
    None when the models are unrelated or the history does not explain their depths."""
    if lin.relation == "unrelated":
        return None
    inserts = lambda events: [int(e.get("index", 0)) for e in events if e.get("kind") == INSERT_LAYER]  # noqa
    ins_a, ins_b = inserts(lin.events_a), inserts(lin.events_b)
    L0 = L_a - len(ins_a)
    if L0 < 1 or L0 != L_b - len(ins_b):
        return None

    def where(insertions):  # the common ancestor's layer i -> its index after the insertions
        pos, L = list(range(L0)), L0
        for k in insertions:
            k = min(k, L)  # the fork appends when k > L
            pos = [p if p < k else p + 1 for p in pos]
            L += 1
        return pos

    return dict(zip(where(ins_a), where(ins_b)))


# ------------------------------------------------------------------------------------ cosines

def cosine(x, y):
    """(cosine or None, reason): accumulated in float64; None when either side is all zeros."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    nx, ny = float(np.dot(x, x)), float(np.dot(y, y))
    if nx == 0.0 or ny == 0.0:
        return None, "zero in both" if nx == ny else ("zero in A" if nx == 0.0 else "zero in B")
    return float(np.clip(np.dot(x, y) / np.sqrt(nx * ny), -1.0, 1.0)), None


def _ordered(entries, label, reverse):
    # numbers ascending (most changed first), or descending with reverse; n/a entries always last
    nums = [e for e in entries if e["cosine"] is not None]
    nums.sort(key=lambda e: ((-e["cosine"]) if reverse else e["cosine"], label(e)))
    return nums + sorted((e for e in entries if e["cosine"] is None), key=label)


@dataclass
class Comparison:
    lineage: Lineage
    hyperparameters_differ: dict      # {name: [A's, B's]}
    layer_map: dict | None            # {A's layer: B's layer} when it is not the identity
    tensors: list                     # [{"name", ("name_b",) "cosine", ("reason")}], sorted
    tokens: list                      # [{"token_id", ("token_id_b",) "token", "head", "cosine", ("reason")}]
    only_in_a: list
    only_in_b: list
    shape_mismatch: list              # [{"name", "shape_a", "shape_b"}]
    notes: list                       # one-line remarks (why tokens were skipped, ...)

    def to_dict(self):
        d = asdict(self)
        for side in ("events_a", "events_b"):  # the logs themselves are in the files; say what happened
            d["lineage"][side] = [describe_event(e) for e in getattr(self.lineage, side)]
        d["layer_map"] = None if self.layer_map is None else {str(k): v for k, v in self.layer_map.items()}
        return d


def compare_models(mf_a, mf_b, tok_a=None, tok_b=None, reverse=False, align_layers=True):
    """Compare two ModelFiles (tokenizers are rebuilt from the files when not given). Lists are sorted
    by cosine ascending (descending with reverse), n/a last; nothing is cut to a limit here. A tokenizer
    whose size is not its model's vocab_size is a ModelFileError naming the file."""
    from femtogpt.io.checkpoint import model_tokenizer

    tok_a = tok_a or model_tokenizer(mf_a)
    tok_b = tok_b or model_tokenizer(mf_b)
    lin = lineage(expanded(mf_a.logs), expanded(mf_b.logs))
    hp_a, hp_b = mf_a.hp.to_dict(), mf_b.hp.to_dict()
    hp_diff = {k: [hp_a[k], hp_b[k]] for k in hp_a if hp_a[k] != hp_b.get(k)}
    L_a, L_b = mf_a.hp.num_layers, mf_b.hp.num_layers
    layer_map = layer_alignment(lin, L_a, L_b) if align_layers else None
    identity = {l: l for l in range(min(L_a, L_b))}
    a_to_b = identity if layer_map is None else layer_map

    A, B = mf_a.tensors, mf_b.tensors
    partner = {}
    for name in A:
        l = layer_of(name)
        partner[name] = name if l is None else (rename_layer(name, a_to_b[l]) if l in a_to_b else None)
    matched_b = {p for p in partner.values() if p is not None and p in B}
    tensors, only_a, mismatch = [], [], []
    for name, other in partner.items():
        if other is None or other not in B:
            only_a.append(name)
        elif A[name].shape != B[other].shape:
            mismatch.append({"name": name, **({"name_b": other} if other != name else {}),
                             "shape_a": list(A[name].shape), "shape_b": list(B[other].shape)})
        elif name != "token_embedding":  # compared per token and head below, as the reference does
            cos, reason = cosine(A[name], B[other])
            tensors.append({"name": name, **({"name_b": other} if other != name else {}), "cosine": cos,
                            **({"reason": reason} if reason else {})})
    only_b = [n for n in B if n not in matched_b]

    tokens, notes = [], []
    E_a, E_b, H_a, H_b = (mf_a.hp.embedding_degree, mf_b.hp.embedding_degree,
                          mf_a.hp.num_heads, mf_b.hp.num_heads)
    if E_a != E_b or H_a != H_b:
        notes.append("token embeddings not compared: the embedding sizes or head counts differ")
    elif mf_a.hp.attention_width != E_a or mf_b.hp.attention_width != E_b:
        notes.append("token embeddings not compared per head: num_heads * head_size is not embedding_degree")
    else:
        if mf_a.tokenizer == mf_b.tokenizer and mf_a.hp.vocab_size == mf_b.hp.vocab_size:
            pairs = [(i, i) for i in range(mf_a.hp.vocab_size)]
        else:
            pairs = shared_token_pairs(tok_b, tok_a)  # (A's id, B's id) of tokens spelled the same
            notes.append(f"the vocabularies differ: token embeddings compared on the {len(pairs)} tokens "
                         f"both spell the same")
        tokens = _token_cosines(A["token_embedding"], B["token_embedding"], pairs, H_a, tok_a)
    label_t = lambda e: e["name"]  # noqa: E731
    label_k = lambda e: (e["token"], e["head"], e["token_id"])  # noqa: E731
    return Comparison(lineage=lin, hyperparameters_differ=hp_diff,
                      layer_map=None if layer_map is None or layer_map == identity else layer_map,
                      tensors=_ordered(tensors, label_t, reverse), tokens=_ordered(tokens, label_k, reverse),
                      only_in_a=only_a, only_in_b=only_b, shape_mismatch=mismatch, notes=notes)


def _token_cosines(emb_a, emb_b, pairs, H, tok_a):
    """Entries for every (token pair, head): the cosine of the two hs-wide slices of the embedding rows."""
    if not pairs:
        return []
    ia, ib = (np.array(ids, dtype=np.int64) for ids in zip(*pairs))
    V, E = len(ia), emb_a.shape[1]
    xa = emb_a[ia].astype(np.float64).reshape(V, H, E // H)   # (n, H, hs)
    xb = emb_b[ib].astype(np.float64).reshape(V, H, E // H)
    dot, na, nb = (xa * xb).sum(-1), (xa * xa).sum(-1), (xb * xb).sum(-1)
    out = []
    for r in range(V):
        token = tok_a.token_str(int(ia[r]))
        for h in range(H):
            entry = {"token_id": int(ia[r])}
            if ib[r] != ia[r]:
                entry["token_id_b"] = int(ib[r])
            entry.update(token=token, head=h)
            if na[r, h] == 0.0 or nb[r, h] == 0.0:
                entry["cosine"] = None
                entry["reason"] = ("zero in both" if na[r, h] == nb[r, h]
                                   else "zero in A" if na[r, h] == 0.0 else "zero in B")
            else:
                entry["cosine"] = float(np.clip(dot[r, h] / np.sqrt(na[r, h] * nb[r, h]), -1.0, 1.0))
            out.append(entry)
    return out
