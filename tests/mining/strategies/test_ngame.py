"""NGAME: balanced clustering, the cluster-batch sampler (card tests 1-3), the curriculum, and
the triplet margin OHNM loss against a naive loop and the official computation written out."""

from __future__ import annotations

import importlib.util
import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posneg.mining.strategies import (
    NGAMESampler,
    TripletMarginOHNMLoss,
    balanced_clusters,
    cluster_size_schedule,
    refresh_due,
    triplet_margin_ohnm,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Small segmented sorts: intra-op threads only add overhead on a loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _blobs(n_blobs: int = 8, per: int = 16, d: int = 12, noise: float = 0.02, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.nn.functional.normalize(torch.randn(n_blobs, d, generator=g), dim=1)
    labels = torch.arange(n_blobs).repeat_interleave(per)
    x = centers[labels] + noise * torch.randn(n_blobs * per, d, generator=g)
    perm = torch.randperm(n_blobs * per, generator=g)
    return x[perm], labels[perm]


def _digits() -> torch.Tensor:
    """The first 1024 of scikit-learn's bundled 8x8 digits, centred: real data with clusters.

    Read from the csv that ships in the scikit-learn package without importing scikit-learn
    (its import costs seconds on a loaded machine)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-learn is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    data = np.loadtxt(path, delimiter=",", dtype=np.float32)
    x = torch.from_numpy(data[:1024, :-1])
    return x - x.mean(dim=0)


# --- balanced_clusters ------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "size"), [(1, 1), (5, 1), (10, 3), (37, 4), (64, 8), (100, 100)])
def test_partition_balanced_and_bounded(n: int, size: int) -> None:
    x = torch.randn(n, 5, generator=torch.Generator().manual_seed(n))
    clusters = balanced_clusters(x, size, generator=torch.Generator().manual_seed(0))
    members = torch.cat(clusters).sort().values
    assert torch.equal(members, torch.arange(n))
    sizes = [len(c) for c in clusters]
    assert max(sizes) <= size and max(sizes) - min(sizes) <= 1
    levels = 0 if n <= size else math.ceil(math.log2(n / size))
    assert len(clusters) == min(2**levels, n)  # the power-of-two count of xclib


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 70), size=st.integers(1, 20), seed=st.integers(0, 1000))
def test_hypothesis_balance(n: int, size: int, seed: int) -> None:
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    clusters = balanced_clusters(x, size, generator=torch.Generator().manual_seed(seed))
    sizes = [len(c) for c in clusters]
    assert sum(sizes) == n and max(sizes) <= size and max(sizes) - min(sizes) <= 1
    assert torch.equal(torch.cat(clusters).sort().values, torch.arange(n))


def test_recovers_planted_blobs() -> None:
    x, labels = _blobs()
    clusters = balanced_clusters(x, 16, generator=torch.Generator().manual_seed(3))
    assert len(clusters) == 8
    for c in clusters:
        assert labels[c].unique().numel() == 1  # each cluster is one blob


def test_scale_invariant_cosine() -> None:
    x, _ = _blobs(seed=1)
    scale = torch.rand(x.shape[0], 1, generator=torch.Generator().manual_seed(0)) * 5 + 0.1
    a = balanced_clusters(x, 8, generator=torch.Generator().manual_seed(4))
    b = balanced_clusters(x * scale, 8, generator=torch.Generator().manual_seed(4))
    assert [c.tolist() for c in a] == [c.tolist() for c in b]


def test_deterministic_under_generator_and_global_rng_untouched() -> None:
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(0))
    before = torch.get_rng_state()
    a = balanced_clusters(x, 4, generator=torch.Generator().manual_seed(5))
    b = balanced_clusters(x, 4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(before, torch.get_rng_state())
    assert [c.tolist() for c in a] == [c.tolist() for c in b]


# --- NGAMESampler -----------------------------------------------------------------------------


def _flat(sampler: NGAMESampler) -> list[int]:
    return [i for batch in sampler for i in batch]


def test_card_cluster_size_one_is_a_random_permutation() -> None:
    """Card test 1: before any refresh and with cluster size 1, batches = torch.randperm."""
    n = 50
    sampler = NGAMESampler(n, 8, generator=torch.Generator().manual_seed(7))
    assert _flat(sampler) == torch.randperm(n, generator=torch.Generator().manual_seed(7)).tolist()
    sampler.refresh(torch.randn(n, 4), 4, generator=torch.Generator().manual_seed(0))
    sampler.refresh(torch.randn(n, 4), 1)
    assert sampler.clusters is None and sampler.cluster_size == 1
    sampler.generator = torch.Generator().manual_seed(9)
    batches = list(sampler)
    assert [len(b) for b in batches] == [8] * 6 + [2]
    assert [i for b in batches for i in b] == torch.randperm(
        n, generator=torch.Generator().manual_seed(9)
    ).tolist()


def test_card_larger_clusters_raise_in_batch_similarity() -> None:
    """Card test 2: the mean in-batch negative cosine similarity grows with the cluster size."""
    x = _digits()
    xn = torch.nn.functional.normalize(x, dim=1)
    n = x.shape[0]
    means = []
    for size in (1, 2, 4, 8, 16):
        sampler = NGAMESampler(n, 64, generator=torch.Generator().manual_seed(0))
        sampler.refresh(x, size, generator=torch.Generator().manual_seed(1))
        total, count = 0.0, 0
        for _ in range(8):  # epochs
            for batch in sampler:
                e = xn[batch]
                sim = e @ e.T
                total += float(sim.sum() - sim.diagonal().sum())
                count += len(batch) * (len(batch) - 1)
        means.append(total / count)
    assert all(b > a for a, b in itertools.pairwise(means)), means


def test_card_batches_are_whole_clusters_except_at_boundaries() -> None:
    """Card test 3: an epoch is the clusters one after another; a batch boundary may cut one."""
    x = _digits()[:300]
    sampler = NGAMESampler(300, 32, generator=torch.Generator().manual_seed(2))
    sampler.refresh(x, 6, generator=torch.Generator().manual_seed(3))
    clusters = sampler.clusters
    assert clusters is not None
    label = torch.empty(300, dtype=torch.int64)
    for c, members in enumerate(clusters):
        label[members] = c
    for _ in range(3):
        batches = list(sampler)
        seq = label[torch.tensor([i for b in batches for i in b])]
        runs = torch.unique_consecutive(seq, return_counts=True)
        assert runs[0].numel() == len(clusters)  # each cluster is one contiguous run
        assert runs[0].unique().numel() == len(clusters)
        sizes = torch.tensor([len(c) for c in clusters])
        assert torch.equal(runs[1], sizes[runs[0]])
        for batch in batches:  # only the first and last cluster of a batch may be partial
            inner = label[torch.tensor(batch)].unique_consecutive()[1:-1]
            for c in inner.tolist():
                assert set(clusters[c].tolist()) <= set(batch)


def test_exact_multiple_gives_whole_clusters_per_batch() -> None:
    x, _ = _blobs(n_blobs=8, per=16)
    sampler = NGAMESampler(128, 32, generator=torch.Generator().manual_seed(0))
    sampler.refresh(x, 16, generator=torch.Generator().manual_seed(1))
    clusters = [set(c.tolist()) for c in sampler.clusters or []]
    for batch in sampler:
        assert len(batch) == 32
        inside = [c for c in clusters if c <= set(batch)]
        assert len(inside) == 2


def test_len_drop_last_and_epochs_differ() -> None:
    sampler = NGAMESampler(10, 4, generator=torch.Generator().manual_seed(0))
    assert len(sampler) == 3 and [len(b) for b in sampler] == [4, 4, 2]
    sampler = NGAMESampler(10, 4, drop_last=True, generator=torch.Generator().manual_seed(0))
    assert len(sampler) == 2 and [len(b) for b in sampler] == [4, 4]
    assert _flat(sampler) != _flat(sampler)  # the generator advances between epochs (w.h.p.)


def test_sampler_without_generator_follows_global_seed() -> None:
    sampler = NGAMESampler(20, 5)
    torch.manual_seed(11)
    a = _flat(sampler)
    torch.manual_seed(11)
    assert _flat(sampler) == a


def _official_cluster_use(epochs: int, refresh_at: dict[int, str]) -> list[str]:
    """Which clustering each epoch's batches come from in the official loop (transcribed).

    Extreme-classification/ngame ``libs/model.py::_fit`` (commit
    f7029748f119d3a316ecbff16e23eb725ad1fe2c): the batch sampler is built before the loop from
    ``indices_permutation()`` of the initial singleton clusters; each epoch first runs
    ``update_sampler`` when a refresh is due, then ``_step`` over the order already in the
    sampler, and only after the epoch ``update_order`` draws the next order from the current
    clusters.
    """
    index = "random"  # ClusteringIndex.random_clustering(): singletons
    order_from = index  # create_batch_sampler(...) -> indices_permutation()
    used = []
    for epoch in range(epochs):
        if epoch in refresh_at:
            index = refresh_at[epoch]  # train_loader.dataset.update_sampler(_X)
        used.append(order_from)  # self._step(train_loader)
        order_from = index  # self.update_order(train_loader)
    return used


def _which_clustering(batches: list[list[int]], plans: dict[str, set[frozenset[int]]]) -> str:
    got = {frozenset(b) for b in batches}
    return next((name for name, clusters in plans.items() if got == clusters), "random")


@pytest.mark.parametrize("deferred", [False, True])
def test_refresh_lag_matches_official_loop_when_deferred(deferred: bool) -> None:
    n, size = 16, 4
    by_block = torch.zeros(n, n // size)
    by_block[torch.arange(n), torch.arange(n) // size] = 1.0  # clusters {0..3}, {4..7}, ...
    by_stride = torch.zeros(n, size)
    by_stride[torch.arange(n), torch.arange(n) % size] = 1.0  # clusters {0,4,8,12}, ...
    noise = 0.01 * torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
    emb = {"block": torch.cat([by_block, noise], 1), "stride": torch.cat([by_stride, noise], 1)}
    plans = {
        "block": {frozenset(range(s, s + size)) for s in range(0, n, size)},
        "stride": {frozenset(range(r, n, size)) for r in range(size)},
    }
    refresh_at = {1: "block", 3: "stride", 4: "random"}
    sampler = NGAMESampler(n, size, generator=torch.Generator().manual_seed(1), deferred=deferred)
    used = []
    for epoch in range(6):
        if epoch in refresh_at:
            name = refresh_at[epoch]
            x = emb.get(name, torch.randn(n, 4))
            sampler.refresh(x, 1 if name == "random" else size, generator=torch.Generator())
        used.append(_which_clustering(list(sampler), plans))
    official = _official_cluster_use(6, refresh_at)
    assert official == ["random", "random", "block", "block", "stride", "random"]
    if deferred:
        assert used == official
    else:  # the default: each refresh is used from the very next epoch, one epoch earlier
        assert used == ["random", "block", "block", "stride", "random", "random"]
        assert used[:-1] == official[1:]
    assert f"deferred={deferred}" in repr(sampler)


def test_deferred_cluster_size_and_clusters_follow_the_epoch_in_force() -> None:
    x = torch.randn(12, 3, generator=torch.Generator().manual_seed(2))
    sampler = NGAMESampler(12, 4, generator=torch.Generator().manual_seed(3), deferred=True)
    sampler.refresh(x, 4, generator=torch.Generator().manual_seed(4))
    assert sampler.cluster_size == 1 and sampler.clusters is None  # not yet in force
    first = list(sampler)  # this epoch still uses the old (random) batches
    assert sorted(i for b in first for i in b) == list(range(12))
    assert sampler.cluster_size == 4 and sampler.clusters is not None
    position = {item: k for k, item in enumerate(_flat(sampler))}
    for cluster in sampler.clusters:  # the next epoch concatenates whole clusters
        where = sorted(position[int(i)] for i in cluster)
        assert where == list(range(where[0], where[0] + len(where)))


def test_sampler_repr_and_errors() -> None:
    s = NGAMESampler(12, 4, drop_last=True)
    assert "num_items=12" in repr(s) and "batch_size=4" in repr(s) and "cluster_size=1" in repr(s)
    with pytest.raises(ValueError, match="NGAMESampler: num_items must be >= 1"):
        NGAMESampler(0, 4)
    with pytest.raises(TypeError, match="NGAMESampler: batch_size must be an int"):
        NGAMESampler(4, 2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="drop_last must be a bool"):
        NGAMESampler(4, 2, drop_last=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="NGAMESampler: deferred must be a bool"):
        NGAMESampler(4, 2, deferred="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator"):
        NGAMESampler(4, 2, generator=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"refresh: embeddings must have num_items=12 rows"):
        s.refresh(torch.randn(5, 3), 2)
    with pytest.raises(ValueError, match="refresh: cluster_size must be >= 1"):
        s.refresh(torch.randn(12, 3), 0)
    with pytest.raises(ValueError, match="refresh: embeddings contains NaN"):
        s.refresh(torch.full((12, 3), float("nan")), 2)
    with pytest.raises(ValueError, match=r"balanced_clusters: embeddings must have shape \(B, D\)"):
        balanced_clusters(torch.randn(5), 2)
    with pytest.raises(TypeError, match="balanced_clusters: embeddings must be a floating"):
        balanced_clusters(torch.ones(5, 2, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="balanced_clusters: max_iter must be >= 1"):
        balanced_clusters(torch.randn(5, 2), 2, max_iter=0)


# --- schedule ---------------------------------------------------------------------------------


def test_schedule_official_list() -> None:
    curr = [10, 20, 25, 50, 75, 100, 125, 150, 200]
    sizes = [cluster_size_schedule(e, curr_epochs=curr) for e in range(0, 201)]
    assert sizes[9] == 1 and sizes[10] == 2 and sizes[19] == 2 and sizes[20] == 4
    assert sizes[25] == 8 and sizes[50] == 16 and sizes[200] == 512
    assert cluster_size_schedule(300, curr_epochs=curr, max_size=64) == 64
    assert cluster_size_schedule(12, curr_epochs=curr, start=4, factor=3) == 12


def test_schedule_regular_form_and_refresh_due() -> None:
    assert [cluster_size_schedule(e, warmup=5, every=5) for e in (0, 4, 5, 9, 10, 20)] == [
        1,
        1,
        2,
        2,
        4,
        16,
    ]
    assert cluster_size_schedule(100, warmup=0, every=1, max_size=48) == 48
    assert [e for e in range(26) if refresh_due(e, warmup=10, interval=5)] == [10, 15, 20, 25]
    assert refresh_due(3, warmup=0, interval=1)


def test_schedule_errors() -> None:
    with pytest.raises(ValueError, match="give either curr_epochs or warmup and every"):
        cluster_size_schedule(3)
    with pytest.raises(ValueError, match="give either curr_epochs or warmup and every"):
        cluster_size_schedule(3, curr_epochs=[1], warmup=1, every=1)
    with pytest.raises(ValueError, match="needs both warmup and every"):
        cluster_size_schedule(3, warmup=1)
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        cluster_size_schedule(-1, curr_epochs=[1])
    with pytest.raises(ValueError, match="factor must be >= 2"):
        cluster_size_schedule(1, curr_epochs=[1], factor=1)
    with pytest.raises(ValueError, match="max_size must be >= 4"):
        cluster_size_schedule(1, curr_epochs=[1], start=4, max_size=2)
    with pytest.raises(TypeError, match="curr_epochs must be a sequence of ints"):
        cluster_size_schedule(1, curr_epochs=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="every must be >= 1"):
        cluster_size_schedule(1, warmup=0, every=0)
    with pytest.raises(ValueError, match="refresh_due: interval must be >= 1"):
        refresh_due(1, warmup=0, interval=0)


# --- triplet_margin_ohnm ----------------------------------------------------------------------


def naive_ohnm(
    q: torch.Tensor,
    lab: torch.Tensor,
    positive: torch.Tensor | None,
    k: int,
    margin: float,
    aggressive: bool,
    tau: float,
    normalize: bool = True,
) -> tuple[list[float], int]:
    """Per-query sums and the number of selected pairs, loop by loop (float64)."""
    if normalize:
        q = torch.nn.functional.normalize(q, dim=1)
        lab = torch.nn.functional.normalize(lab, dim=1)
    b = q.shape[0]
    sums, count = [], 0
    for i in range(b):
        s_p = float(q[i] @ lab[i])
        cands = [
            (float(q[i] @ lab[j]), j)
            for j in range(b)
            if j != i and (positive is None or not bool(positive[i, j]))
        ]
        cands.sort(key=lambda t: -t[0])
        chosen = [s for s, _ in cands[:k]]
        losses = [max(0.0, s - s_p + margin) for s in chosen]
        if aggressive and chosen:
            logits = [
                s / tau * (1.0 if loss > 0 else 0.0) for s, loss in zip(chosen, losses, strict=True)
            ]
            top = max(logits)
            z = sum(math.exp(v - top) for v in logits)
            losses = [loss * math.exp(v - top) / z for loss, v in zip(losses, logits, strict=True)]
        sums.append(sum(losses))
        count += len(chosen)
    return sums, count


def official_ohnm(
    q: torch.Tensor, lab: torch.Tensor, target: torch.Tensor, k: int, margin: float, tau: float
) -> torch.Tensor:
    """ngame libs/loss.py TripletMarginLossOHNM.forward (apply_softmax=True), written out."""
    q = torch.nn.functional.normalize(q, dim=1)
    lab = torch.nn.functional.normalize(lab, dim=1)
    inp = q @ lab.T
    sim_p = torch.diagonal(inp).view(-1, 1)
    similarities = torch.where(target == 0, inp, torch.full_like(inp, -10))
    _, indices = torch.topk(similarities, largest=True, dim=1, k=k)
    sim_n = inp.gather(1, indices)
    loss = torch.max(torch.zeros_like(sim_p), sim_n - sim_p + margin)
    mask = loss != 0
    prob = torch.softmax(sim_n / tau * mask, dim=1)
    return (loss * prob).mean()


@pytest.mark.parametrize("aggressive", [False, True])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_ohnm_formula(aggressive: bool, chunk_size: int | None) -> None:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(7, 5, generator=g, dtype=torch.float64)
    lab = q + 0.8 * torch.randn(7, 5, generator=g, dtype=torch.float64)
    positive = torch.rand(7, 7, generator=g) < 0.2
    for k, margin in ((3, 0.3), (10, 0.5), (1, 0.0)):
        sums, count = naive_ohnm(q, lab, positive, k, margin, aggressive, 0.1)
        kw = {
            "positive_mask": positive,
            "k": k,
            "margin": margin,
            "aggressive": aggressive,
            "chunk_size": chunk_size,
        }
        none = triplet_margin_ohnm(q, lab, reduction="none", **kw)
        torch.testing.assert_close(none, torch.tensor(sums, dtype=torch.float64))
        mean = triplet_margin_ohnm(q, lab, **kw)
        assert math.isclose(float(mean), sum(sums) / count, rel_tol=1e-10)


def test_ohnm_equals_official_when_enough_negatives() -> None:
    g = torch.Generator().manual_seed(1)
    q = torch.randn(12, 6, generator=g, dtype=torch.float64)
    lab = q + torch.randn(12, 6, generator=g, dtype=torch.float64)
    positive = torch.rand(12, 12, generator=g) < 0.15
    target = positive.clone()
    target.fill_diagonal_(True)
    ours = triplet_margin_ohnm(q, lab, positive_mask=positive, k=4, margin=0.3, tau=0.1)
    torch.testing.assert_close(ours, official_ohnm(q, lab, target.double(), 4, 0.3, 0.1))


def test_ohnm_properties() -> None:
    # far-apart negatives: no violation, zero loss; dot products without normalisation
    q = torch.eye(4, dtype=torch.float64)
    assert float(triplet_margin_ohnm(q, q, margin=0.5)) == 0.0
    assert float(triplet_margin_ohnm(q, q, margin=1.5, aggressive=False)) == pytest.approx(0.5)
    a = triplet_margin_ohnm(2 * q, 3 * q, margin=7.0, aggressive=False, normalize=False)
    assert float(a) == pytest.approx(0.0 - 6.0 + 7.0)  # raw dot products: s_p = 6, s_n = 0
    # every label positive: nothing selected, a connected zero
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    out = triplet_margin_ohnm(x, x.detach(), positive_mask=torch.ones(3, 3, dtype=torch.bool))
    out.backward()
    assert float(out.detach()) == 0.0 and x.grad is not None
    # half inputs
    h = torch.randn(6, 4)
    out = triplet_margin_ohnm(h.half(), h.flip(0).half(), k=2)
    assert out.dtype == torch.float32
    torch.testing.assert_close(
        out, triplet_margin_ohnm(h.half().float(), h.flip(0).half().float(), k=2)
    )


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 7),
    k=st.integers(1, 8),
    aggressive=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_ohnm_hypothesis(b: int, k: int, aggressive: bool, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, 4, generator=g, dtype=torch.float64)
    lab = torch.randn(b, 4, generator=g, dtype=torch.float64)
    positive = torch.rand(b, b, generator=g) < 0.3
    sums, count = naive_ohnm(q, lab, positive, k, 0.4, aggressive, 0.2)
    out = triplet_margin_ohnm(
        q,
        lab,
        positive_mask=positive,
        k=k,
        margin=0.4,
        aggressive=aggressive,
        tau=0.2,
        chunk_size=2,
    )
    expected = sum(sums) / count if count else 0.0
    assert math.isclose(float(out), expected, rel_tol=1e-9, abs_tol=1e-12)


def test_ohnm_module_and_errors() -> None:
    loss = TripletMarginOHNMLoss(k=3, margin=0.2, aggressive=False, tau=0.5, reduction="sum")
    for part in ("k=3", "margin=0.2", "aggressive=False", "tau=0.5", "reduction='sum'"):
        assert part in repr(loss)
    q, lab = torch.randn(5, 4), torch.randn(5, 4)
    torch.testing.assert_close(
        loss(q, lab),
        triplet_margin_ohnm(q, lab, k=3, margin=0.2, aggressive=False, tau=0.5, reduction="sum"),
    )
    fn = "triplet_margin_ohnm"
    with pytest.raises(ValueError, match=f"{fn}: k must be >= 1"):
        triplet_margin_ohnm(q, lab, k=0)
    with pytest.raises(ValueError, match="margin must be >= 0"):
        triplet_margin_ohnm(q, lab, margin=-0.1)
    with pytest.raises(ValueError, match="tau must be > 0"):
        triplet_margin_ohnm(q, lab, tau=0.0)
    with pytest.raises(TypeError, match="aggressive must be a bool"):
        triplet_margin_ohnm(q, lab, aggressive=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"label must have shape \(B, D\) matching query"):
        triplet_margin_ohnm(q, lab[:3])
    with pytest.raises(TypeError, match="label has dtype"):
        triplet_margin_ohnm(q, lab.double())
    with pytest.raises(TypeError, match="positive_mask must be a bool tensor"):
        triplet_margin_ohnm(q, lab, positive_mask=torch.zeros(5, 5))
    with pytest.raises(ValueError, match=r"positive_mask must have shape \(5, 5\)"):
        triplet_margin_ohnm(q, lab, positive_mask=torch.zeros(5, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="TripletMarginOHNMLoss: k must be >= 1"):
        TripletMarginOHNMLoss(k=0)


@pytest.mark.parametrize("aggressive", [False, True])
def test_ohnm_gradcheck_through_row_blocks(aggressive: bool) -> None:
    g = torch.Generator().manual_seed(6)
    q = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    lab = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)

    def fn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return triplet_margin_ohnm(a, b, k=2, margin=0.8, aggressive=aggressive, chunk_size=2)

    assert torch.autograd.gradcheck(fn, (q, lab))
