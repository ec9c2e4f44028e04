"""Sharded exact top-k (posneg.mining.sharded): 2 and 3 gloo processes on CPU.

Every rank holds one shard of a corpus (uneven sizes, an empty shard, shards whose ids are not
in rank order) and searches it; the merged result must equal one process's
``ExactIndex`` search of the whole corpus, element for element: ids, scores, the tie rule
(score descending, then the smaller id; checked by the single-process test in
tests/mining/test_index.py) and the ``-1`` / ``-inf`` padding past the corpus size. The corpus
holds small integers and repeated rows, so products are exact and ties are exact ties.
"""

from __future__ import annotations

import itertools
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from gloo_kit import run_torch_ranks, save_rank_result
from posneg.mining.index import ExactIndex
from posneg.mining.mine import mine
from posneg.mining.sharded import ShardedIndex, shard_bounds, sharded_topk

N, D, Q = 37, 4, 6
KS = (1, 5, N, N + 8)
DEADLINE_S = 90.0
TEARDOWN_GRACE_S = 10.0
#: rows per rank, and the order in which the ranks' shards sit in the corpus
LAYOUTS: dict[int, dict[str, tuple[list[int], list[int]]]] = {
    2: {"uneven": ([15, 22], [0, 1]), "reversed": ([30, 7], [1, 0])},
    3: {"uneven": ([10, 0, 27], [0, 1, 2]), "shuffled": ([12, 13, 12], [2, 0, 1])},
}


def make_data(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer-valued corpus (N, D) with repeated rows (exact ties) and queries (Q, D)."""
    g = torch.Generator().manual_seed(0)
    corpus = torch.randint(-2, 3, (N, D), generator=g).to(dtype)
    corpus[20:25] = corpus[3]  # five more copies of row 3: ties across shards
    queries = torch.randint(-2, 3, (Q, D), generator=g).to(dtype)
    queries[0] = corpus[3]
    return queries, corpus


def layout_offsets(sizes: list[int], order: list[int]) -> list[int]:
    """Global offset of each rank's shard when the shards sit in the corpus in ``order``."""
    offsets, at = [0] * len(sizes), 0
    for r in order:
        offsets[r] = at
        at += sizes[r]
    return offsets


def single(queries: torch.Tensor, corpus: torch.Tensor, k: int, metric: str = "ip") -> Any:
    index = ExactIndex(metric=metric)  # type: ignore[arg-type]
    index.add(corpus)
    return index.search(queries, k)


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=60),
    )
    try:
        results: dict[str, Any] = {}
        queries, corpus = make_data()
        for name, (sizes, order) in LAYOUTS[world].items():
            off = layout_offsets(sizes, order)[rank]
            shard = corpus[off : off + sizes[rank]]
            for k in KS:
                results[f"{name}/{k}"] = sharded_topk(queries, shard, k=k, shard_offset=off)
            # each rank its own queries (rank r: rows r, r + world, ...)
            mine_q = queries[rank::world]
            results[f"{name}/gather"] = sharded_topk(
                mine_q, shard, k=7, shard_offset=off, gather_queries=True, doc_chunk=8
            )
        g = torch.Generator().manual_seed(1)
        q64, c64 = (
            torch.randn(5, 8, generator=g, dtype=torch.float64),
            torch.randn(40, 8, generator=g, dtype=torch.float64),
        )
        start, stop = shard_bounds(40, world, rank)
        results["cosine64"] = sharded_topk(
            q64, c64[start:stop], k=9, shard_offset=start, metric="cosine"
        )
        # mine() ranking with a ShardedIndex: the same negatives as one process.
        positives = [[i] for i in range(Q)]
        results["mine"] = mine(
            queries, corpus, positives, num_negatives=3, range_max=12, index=ShardedIndex()
        ).ids

        bad: dict[str, tuple[Any, Any, dict[str, Any]]] = {
            "overlap": (queries, corpus[:5], {"shard_offset": 3 * rank}),
            "k": (queries, corpus[:5], {"shard_offset": 5 * rank, "k": 3 + rank}),
            "not_a_tensor": ([1.0] if rank == 1 else queries, corpus[:5], {"shard_offset": 0}),
            "queries": (queries[: 2 + rank], corpus[:5], {"shard_offset": 5 * rank}),
        }
        for case, (q, shard, kw) in bad.items():
            kw = {"k": 3, **kw}
            try:
                sharded_topk(q, shard, **kw)
                results[f"error/{case}"] = None
            except (TypeError, ValueError) as err:
                results[f"error/{case}"] = f"{type(err).__name__}: {err}"
        after = torch.tensor([rank])
        dist.all_reduce(after)
        results["after_errors"] = after
        save_rank_result(results, out_dir, rank)
    finally:
        dist.destroy_process_group()


def spawn(world: int, out: Path) -> list[dict[str, Any]]:
    """Run ``_worker`` on ``world`` gloo ranks; the ranks' saved results, in rank order."""
    return run_torch_ranks(_worker, world, out, deadline_s=DEADLINE_S, grace_s=TEARDOWN_GRACE_S)


@pytest.fixture(scope="module", params=[2, 3], ids=["world2", "world3"])
def ranks(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    world = int(request.param)
    return world, spawn(world, tmp_path_factory.mktemp(f"sharded{world}"))


def same(got: tuple[torch.Tensor, torch.Tensor], want: tuple[torch.Tensor, torch.Tensor]) -> None:
    assert torch.equal(got[1], want[1]), (got[1], want[1])
    assert torch.equal(got[0], want[0]), (got[0], want[0])


# ----------------------------------------------------------------------------- many ranks
@pytest.mark.parametrize("k", KS)
def test_equals_one_process(ranks: Any, k: int) -> None:
    world, results = ranks
    queries, corpus = make_data()
    want = single(queries, corpus, k)
    for name in LAYOUTS[world]:
        for res in results:
            same(res[f"{name}/{k}"], want)
    # the data really has ties straddling the k-th place of some row
    scores = want[0]
    if 1 < k < N:
        assert bool((scores[:, k - 1] == scores[:, k - 2]).any())


def test_ties_go_to_the_smaller_id(ranks: Any) -> None:
    _, results = ranks
    queries, corpus = make_data()
    got = results[0][f"{next(iter(LAYOUTS[2]))}/5"]
    # query 0 equals corpus rows 3 and 20..24; the best five are rows 3, 20, 21, 22, 23
    row3 = float(corpus[3] @ corpus[3])
    top = [i for i in range(N) if float(queries[0] @ corpus[i]) == row3]
    assert len(top) >= 6 and got[1][0].tolist() == top[:5]


def test_per_rank_queries(ranks: Any) -> None:
    world, results = ranks
    queries, corpus = make_data()
    want = single(queries, corpus, 7)
    for name in LAYOUTS[world]:
        for r, res in enumerate(results):
            same(res[f"{name}/gather"], (want[0][r::world], want[1][r::world]))


def test_cosine_float64(ranks: Any) -> None:
    _, results = ranks
    g = torch.Generator().manual_seed(1)
    q64 = torch.randn(5, 8, generator=g, dtype=torch.float64)
    c64 = torch.randn(40, 8, generator=g, dtype=torch.float64)
    want = single(q64, c64, 9, metric="cosine")
    for res in results:
        assert torch.equal(res["cosine64"][1], want[1])
        torch.testing.assert_close(res["cosine64"][0], want[0], rtol=0, atol=1e-6)


def test_mine_with_sharded_index(ranks: Any) -> None:
    _, results = ranks
    queries, corpus = make_data()
    want = mine(queries, corpus, [[i] for i in range(Q)], num_negatives=3, range_max=12).ids
    for res in results:
        assert torch.equal(res["mine"], want)


def test_errors_raise_on_every_rank(ranks: Any) -> None:
    world, results = ranks
    for r, res in enumerate(results):
        assert res["error/overlap"] is not None
        assert res["error/overlap"].startswith("ValueError: sharded_topk: the shards of ranks 0")
        assert "overlap" in res["error/overlap"]
        assert "every rank must pass the same k; got [3, 4" in res["error/k"]
        msg = res["error/not_a_tensor"]
        assert msg is not None and msg.startswith("TypeError: sharded_topk: ")
        if r == 1:
            assert "queries must be a floating-point tensor" in msg or "got list" in msg
            assert "(this is rank 1; ranks with bad input: [1])" in msg
        else:
            assert "the inputs on ranks [1] are invalid" in msg
        assert f"got {[2 + s for s in range(world)]} query rows by rank" in res["error/queries"]
        assert int(res["after_errors"]) == sum(range(world))


# ----------------------------------------------------------------------------- one process
def test_one_process_is_a_local_search() -> None:
    queries, corpus = make_data()
    for k in KS:
        same(sharded_topk(queries, corpus, k=k, shard_offset=0), single(queries, corpus, k))
    scores, ids = sharded_topk(queries, corpus[10:], k=4, shard_offset=100)
    want = single(queries, corpus[10:], 4)
    assert torch.equal(ids, want[1] + 100) and torch.equal(scores, want[0])


def test_shard_bounds_cover_the_corpus() -> None:
    for n in (0, 1, 7, 10):
        for world in (1, 2, 3, 4):
            spans = [shard_bounds(n, world, r) for r in range(world)]
            assert spans[0][0] == 0 and spans[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
            sizes = [b - a for a, b in spans]
            assert max(sizes) - min(sizes) <= 1


def test_sharded_index_one_process() -> None:
    queries, corpus = make_data()
    index = ShardedIndex()
    index.add(corpus)
    assert index.ntotal == N and "ntotal=37" in repr(index)
    same(index.search(queries, 6), single(queries, corpus, 6))
    with pytest.raises(ValueError, match=r"ShardedIndex.add: the corpus was already added"):
        index.add(corpus)
    with pytest.raises(ValueError, match=r"ShardedIndex.add: ids must be None"):
        ShardedIndex().add(corpus, torch.arange(N))
    with pytest.raises(ValueError, match=r"ShardedIndex.search: the index is empty"):
        ShardedIndex().search(queries, 3)
    with pytest.raises(ValueError, match=r"ShardedIndex: metric must be one of"):
        ShardedIndex(metric="l2")  # type: ignore[arg-type]


def test_errors_one_process() -> None:
    queries, corpus = make_data()
    with pytest.raises(ValueError, match=r"sharded_topk: k must be >= 1"):
        sharded_topk(queries, corpus, k=0, shard_offset=0)
    with pytest.raises(ValueError, match=r"sharded_topk: shard_offset must be >= 0"):
        sharded_topk(queries, corpus, k=1, shard_offset=-1)
    with pytest.raises(ValueError, match=r"sharded_topk: shard must have shape \(N_r, D\)"):
        sharded_topk(queries, corpus[0], k=1, shard_offset=0)
    with pytest.raises(ValueError, match=r"sharded_topk: shard must have dimension"):
        sharded_topk(queries, corpus[:, :3], k=1, shard_offset=0)
    with pytest.raises(TypeError, match=r"sharded_topk: shard has dtype torch.float64 but queries"):
        sharded_topk(queries, corpus.double(), k=1, shard_offset=0)
    with pytest.raises(ValueError, match=r"sharded_topk: the corpus is empty"):
        sharded_topk(queries, corpus[:0], k=1, shard_offset=0)
    bad = corpus.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"sharded_topk: shard"):
        sharded_topk(queries, bad, k=1, shard_offset=0)
    with pytest.raises(ValueError, match=r"sharded_topk: k=\d+ exceeds the 37 rows"):
        sharded_topk(queries, corpus, k=1 << 25, shard_offset=0)


if __name__ == "__main__":  # pragma: no cover - spawn children import this module by name
    sys.exit(pytest.main([__file__, "-q"]))
