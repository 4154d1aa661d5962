"""The GPT: the network defined once (training on the tape, KV-cache generation), and sampling.
Built on engine/; knows nothing of files, tokenizers or training loops."""
