"""Tools around training: the benchmark and plotting."""
