"""Generation: `generate` continues a prompt token by token (KV-cached forward, model/kv_cache.py;
the sampler, model/sampling.py), with streaming; `sample_text` does it from text to text."""
import numpy as np

from femtogpt.model.kv_cache import Generator
from femtogpt.model.sampling import sample_next


def generate(model, prompt_ids, count, temperature=1.0, top_k=0, top_p=1.0, seed=None,
             on_token=None, start_id=0, keep=None, on_logits=None):
    """`count` new token ids continuing prompt_ids, with a KV cache.

    A prompt longer than T keeps its last T tokens. An empty prompt starts from the single token
    `start_id` (default 0, the reference's padding id; a CLI should pass e.g. its newline id), which
    is context only and not part of the result. on_token(id) is called as each token is produced
    (streaming). seed: an int (or a np.random.Generator) for reproducible sampling. keep: the
    sliding policy, see `Generator`. on_logits(logits (V,), id), if given, before on_token: the
    model's raw logits the token was sampled from (e.g. to show the top probabilities).
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    gen = Generator(model, keep=keep)
    prompt = [int(t) for t in prompt_ids][-model.hp.num_tokens:]
    out = []
    if count == 0:
        return out
    logits = gen.feed(prompt if prompt else [int(start_id)])  # one batched prefill
    for i in range(count):
        nxt = sample_next(logits, temperature, top_k, top_p, rng)
        out.append(nxt)
        if on_logits is not None:
            on_logits(logits, nxt)
        if on_token is not None:
            on_token(nxt)
        if i + 1 < count:
            logits = gen.feed([nxt])
    return out


def empty_prompt_start(tokenizer):
    """The id to start from when there is no prompt: the newline token if it is one token, else 0."""
    newline = [int(i) for i in tokenizer.encode("\n")]
    return newline[0] if len(newline) == 1 else 0


def sample_text(model, tokenizer, count, temperature=0.8, seed=None, prompt=""):
    """`count` tokens sampled after `prompt` (empty: from a newline), decoded to text."""
    ids = [int(i) for i in tokenizer.encode(prompt)]
    out = generate(model, ids, count, temperature=temperature, seed=seed,
                   start_id=empty_prompt_start(tokenizer) if not ids else 0)
    return tokenizer.decode(out)
