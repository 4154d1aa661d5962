"""Text: tokenizers (Hugging Face `tokenizers`), reading a corpus, BPE training and the token cache."""
