"""Hard negatives from a corpus: encoders and embedding cache, indexes, the miner, strategies."""
