"""Text: the tokenizer (tokenizer.py, Hugging Face `tokenizers`), one of each kind (build.py), tokenizer
files (tokenizer_files.py), the corpus (corpus.py, fingerprint.py), BPE training (bpe.py), the token
cache (token_cache.py) and streaming decode (stream.py)."""
