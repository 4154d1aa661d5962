"""Files: the model file (model_file.py: atomic save, validated load; model_schema.py: what it may hold),
the in-memory checkpoint built from it (checkpoint.py), logs, log summaries, export, and the Rust fork's
.dat files. Every write goes through femtogpt/atomic.py."""
