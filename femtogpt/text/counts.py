"""Token counts of a dataset, for `count-tokens`: every token of the vocabulary, most frequent first."""
import numpy as np


def token_counts(tokenizer, ids, top=None):
    """[{"rank", "id", "count", "token"}] for every token id (zero counts too; the `top` most frequent
    when given), count descending and ties by id, and the number of <unk> among `ids`."""
    counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=tokenizer.vocab_size)
    order = np.lexsort((np.arange(tokenizer.vocab_size), -counts))   # count descending, then id
    shown = order if top is None else order[:top]
    rows = [{"count": int(counts[i]), "id": int(i), "rank": r, "token": tokenizer.token_str(i)}
            for r, i in enumerate(shown)]
    unknown = int(counts[tokenizer.unk_id]) if tokenizer.unk_id is not None else 0
    return rows, unknown
