"""Hard negatives from a corpus: encoders and embedding cache, indexes, the miner, strategies.

- :func:`load_encoder` / :func:`encode`: the packaged all-MiniLM-L6-v2 (offline), any
  sentence-transformers model, or a callable; embeddings cached on disk in resumable shards.
- :class:`ExactIndex` / :class:`FaissIndex`: ``add(embeddings, ids)``, ``search(queries, k)``.
- :func:`mine`: negatives from a rank window with false-negative filters, under a generator.
- :func:`mine_files` with a :class:`MineConfig`: ``posneg mine`` as a function (files read and
  written by :mod:`posneg.mining.files`).
- :func:`mine_hard_negatives`: sentence-transformers' ``util.mine_hard_negatives`` on posneg's
  miner (a ``datasets.Dataset`` in and out, the same names and, for the same settings, the same
  negatives; :mod:`posneg.mining.st_compat`).
- :func:`retrieval_metrics`: MRR@10, nDCG@10, Recall@k through an index (no full score matrix).
- :mod:`posneg.mining.strategies`: STAR, ADORE, NGAME, ANCE-style refresh, random negatives.
"""

from posneg.mining.config import MineConfig
from posneg.mining.encode import DEFAULT_MODEL, TextEncoder, encode, load_encoder
from posneg.mining.index import ExactIndex, FaissIndex, Index
from posneg.mining.metrics import retrieval_metrics
from posneg.mining.mine import MinedNegatives, duplicate_groups, mine
from posneg.mining.pipeline import MineSummary, mine_files
from posneg.mining.sharded import ShardedIndex, shard_bounds, sharded_topk
from posneg.mining.st_compat import HardNegativeOptions, mine_hard_negatives

__all__ = [
    "DEFAULT_MODEL",
    "ExactIndex",
    "FaissIndex",
    "HardNegativeOptions",
    "Index",
    "MineConfig",
    "MineSummary",
    "MinedNegatives",
    "ShardedIndex",
    "TextEncoder",
    "duplicate_groups",
    "encode",
    "load_encoder",
    "mine",
    "mine_files",
    "mine_hard_negatives",
    "retrieval_metrics",
    "shard_bounds",
    "sharded_topk",
]
