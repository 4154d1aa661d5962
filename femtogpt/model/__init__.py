"""The GPT: the network defined once (block.py), run on the autograd tape for training (gpt.py, tape.py)
and on a KV cache for generation (kv_cache.py); hidden-state traces (trace.py); the sampler and the
generate loop (sampling.py, generate.py); every buffer a step allocates (buffers.py).
Built on engine/; knows nothing of files, tokenizers or training loops."""
