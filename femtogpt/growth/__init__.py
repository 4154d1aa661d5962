"""Growing and comparing models: insert-layer, init-with (surgery) and compare (lineage and cosines)."""
