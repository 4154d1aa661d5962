"""Files: the model file (schema, atomic save, validated load), the in-memory checkpoint built from it,
log summaries, export, and the Rust fork's .dat files."""
