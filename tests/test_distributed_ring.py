"""Ring-tiled InfoNCE / NT-Xent (posneg.distributed_ring): 2 and 4 gloo processes on CPU, float64.

Each rank holds its rows of one global batch and calls ``ring_info_nce`` / ``ring_nt_xent``;
against one process computing ``info_nce`` / ``nt_xent`` on the concatenated batch:

* ``"mean"``/``"sum"``: the loss is the same on every rank and equals the single-process loss;
  the gradient of a rank's inputs is ``world_size`` times the single-process slice (the contract
  of ``gather_with_grad``: backward sums the incoming gradients over ranks);
* ``"none"``: a rank's rows are the single-process slice, and the gradient of
  ``sum_r w_r . L_r`` reaching each rank is the single-process gradient of ``w . L`` (no factor);
* uneven rows per rank, a subgroup of ranks (global-rank addressing), bad input on one rank
  (every rank raises, the group stays usable), and what travels: point-to-point messages of one
  rank's block at most, collectives of a few numbers only (no rank gathers the batch).

The ring logic was checked against Inf-CL's official code (DAMO-NLP-SG/Inf-CLIP,
``inf_cl/ring.py`` at commit 40ca596d341a8607eca9c8c634eb8b7f84545fc3, ``RingProb``: keys passed
rank r -> r + 1 with ``batch_isend_irecv``, an online log-sum-exp forward, a backward that
re-circulates the keys while the key gradient travels behind them back to its owner after W
hops); the expected numbers come from posneg's single-process losses, not from that code. The
two deliberate differences from the official code have tests of their own at the end.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from gloo_kit import run_torch_ranks, save_rank_result
from posneg import distributed_ring as ring
from posneg.losses.info_nce import info_nce, nt_xent

DIM = 6
DEADLINE_S = 90.0
TEARDOWN_GRACE_S = 10.0
f64 = torch.float64

LAYOUTS: dict[int, dict[str, list[int]]] = {
    2: {"equal": [4, 4], "uneven": [3, 5]},
    4: {"equal": [2, 2, 2, 2], "uneven": [1, 3, 2, 4]},
}
LOSSES = ("info_nce", "nt_xent")
REDUCTIONS = ("mean", "sum", "none")
#: (temperature, normalize) of the cases; the second skips normalisation.
HPARAMS = {"default": (0.3, True), "raw": (0.7, False)}
SUBGROUP = [1, 3]


def make_data(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two views (n, DIM) and per-row weights (n,) for the ``"none"`` backward."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, DIM, generator=g, dtype=f64)
    b = a + 0.5 * torch.randn(n, DIM, generator=g, dtype=f64)
    w = torch.rand(2 * n, generator=g, dtype=f64)
    return a, b, w


def weights_of(name: str, w: torch.Tensor, rows: slice, n: int) -> torch.Tensor:
    """The weights of this rank's ``"none"`` rows (NT-Xent: its z1 rows, then its z2 rows)."""
    if name == "info_nce":
        return w[rows]
    return torch.cat([w[rows], w[n + rows.start : n + rows.stop]])


def run_case(
    name: str, reduction: str, hp: str, rows: slice, n: int, distributed: bool, group: Any = None
) -> dict[str, torch.Tensor]:
    """Loss and input gradients of one case on ``rows`` of an ``n``-row batch."""
    a, b, w = make_data(n)
    x1 = a[rows].clone().requires_grad_()
    x2 = b[rows].clone().requires_grad_()
    t, normalize = HPARAMS[hp]
    kw: dict[str, Any] = {"temperature": t, "normalize": normalize, "reduction": reduction}
    if distributed:
        fn = ring.ring_info_nce if name == "info_nce" else ring.ring_nt_xent
        loss = fn(x1, x2, group=group, **kw)
    else:
        loss = (info_nce if name == "info_nce" else nt_xent)(x1, x2, **kw)
    if reduction == "none":
        weights = weights_of(name, w, rows, n) if distributed else w[: loss.shape[0]]
        (loss * weights).sum().backward()
    else:
        loss.backward()
    assert x1.grad is not None and x2.grad is not None
    return {"loss": loss.detach(), "x1": x1.grad, "x2": x2.grad}


def span(sizes: list[int], r: int) -> slice:
    return slice(sum(sizes[:r]), sum(sizes[: r + 1]))


class Traffic:
    """Wraps the torch.distributed calls the ring uses and records the largest payloads."""

    def __init__(self) -> None:
        self.p2p: list[int] = []
        self.collective: list[int] = []
        self._saved: dict[str, Any] = {}

    def __enter__(self) -> Traffic:
        for name in ("batch_isend_irecv", "all_gather", "all_reduce"):
            self._saved[name] = getattr(dist, name)

        def batch(ops: list[Any]) -> Any:
            self.p2p += [op.tensor.numel() for op in ops]
            return self._saved["batch_isend_irecv"](ops)

        def gather(out: list[torch.Tensor], t: torch.Tensor, **kw: Any) -> Any:
            self.collective.append(t.numel())
            return self._saved["all_gather"](out, t, **kw)

        def reduce(t: torch.Tensor, **kw: Any) -> Any:
            self.collective.append(t.numel())
            return self._saved["all_reduce"](t, **kw)

        dist.batch_isend_irecv, dist.all_gather, dist.all_reduce = batch, gather, reduce  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        for name, fn in self._saved.items():
            setattr(dist, name, fn)


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
        for layout, sizes in LAYOUTS[world].items():
            n = sum(sizes)
            for name in LOSSES:
                for reduction in REDUCTIONS:
                    for hp in HPARAMS:
                        if hp != "default" and reduction != "mean":
                            continue
                        key = f"{name}/{layout}/{reduction}/{hp}"
                        results[key] = run_case(name, reduction, hp, span(sizes, rank), n, True)
        with Traffic() as traffic:
            uneven = LAYOUTS[world]["uneven"]
            run_case("nt_xent", "mean", "default", span(uneven, rank), sum(uneven), True)
        results["traffic"] = {"p2p": traffic.p2p, "collective": traffic.collective}

        # A subgroup (ranks 1 and 3 of 4): the ring addresses its members by global rank.
        if world == 4:
            sub = dist.new_group(SUBGROUP)
            if rank in SUBGROUP:
                me = SUBGROUP.index(rank)
                for name in LOSSES:
                    results[f"subgroup/{name}"] = run_case(
                        name, "mean", "default", span([2, 3], me), 5, True, group=sub
                    )

        # Bad input on ONE rank: every rank raises, then the group still works.
        bad: dict[str, tuple[Any, Any, dict[str, Any]]] = {
            "not_a_tensor": ([1.0] if rank == 1 else torch.zeros(2, DIM), torch.zeros(2, DIM), {}),
            "dim": (torch.zeros(2, DIM + (rank == 0)), torch.zeros(2, DIM + (rank == 0)), {}),
            "temperature": (
                torch.zeros(2, DIM),
                torch.zeros(2, DIM),
                {"temperature": 0.1 * (1 + rank)},
            ),
            "empty_rank": (torch.zeros(0 if rank == 0 else 2, DIM),) * 2 + ({},),
        }
        for case, (x, y, kw) in bad.items():
            try:
                ring.ring_info_nce(x, y, **kw)
                results[f"error/{case}"] = None
            except (TypeError, ValueError) as err:
                results[f"error/{case}"] = f"{type(err).__name__}: {err}"
        after = torch.tensor([float(rank)])
        dist.all_reduce(after)
        results["after_errors"] = after
        save_rank_result(results, out_dir, rank)
    finally:
        dist.destroy_process_group()


def spawn(world: int, out: Path) -> list[dict[str, Any]]:
    """Run ``_worker`` on ``world`` gloo ranks; the ranks' saved results, in rank order."""
    return run_torch_ranks(_worker, world, out, deadline_s=DEADLINE_S, grace_s=TEARDOWN_GRACE_S)


@pytest.fixture(scope="module", params=[2, 4], ids=["world2", "world4"])
def ranks(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    world = int(request.param)
    return world, spawn(world, tmp_path_factory.mktemp(f"ring{world}"))


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------- many ranks
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("layout", ["equal", "uneven"])
@pytest.mark.parametrize("case", ["mean/default", "sum/default", "none/default", "mean/raw"])
def test_matches_single_process(ranks: Any, name: str, layout: str, case: str) -> None:
    world, results = ranks
    reduction, hp = case.split("/")
    sizes = LAYOUTS[world][layout]
    n = sum(sizes)
    single = run_case(name, reduction, hp, slice(0, n), n, False)
    factor = 1 if reduction == "none" else world  # gather_with_grad's contract
    for r, res in enumerate(results):
        got = res[f"{name}/{layout}/{reduction}/{hp}"]
        rows = span(sizes, r)
        if reduction == "none":
            expected = single["loss"][rows]
            if name == "nt_xent":
                expected = torch.cat([expected, single["loss"][n + rows.start : n + rows.stop]])
            close(got["loss"], expected)
        else:
            close(got["loss"], single["loss"])
        close(got["x1"], factor * single["x1"][rows])
        close(got["x2"], factor * single["x2"][rows])


def test_only_one_block_travels(ranks: Any) -> None:
    world, results = ranks
    sizes = LAYOUTS[world]["uneven"]
    for res in results:
        traffic = res["traffic"]
        # p2p payloads: one rank's two-view block (2 B_s x D) or its key gradient, never more
        assert traffic["p2p"] and max(traffic["p2p"]) <= 2 * max(sizes) * DIM
        assert len(traffic["p2p"]) == 2 * ((world - 1) + (world - 1) + world)
        # collectives: the 7-number descriptor and the scalar loss (and its gradient)
        assert max(traffic["collective"]) <= 7


def test_subgroup_addresses_global_ranks(ranks: Any) -> None:
    world, results = ranks
    if world != 4:
        pytest.skip("the subgroup case runs with 4 ranks")
    for name in LOSSES:
        single = run_case(name, "mean", "default", slice(0, 5), 5, False)
        for me, r in enumerate(SUBGROUP):
            got = results[r][f"subgroup/{name}"]
            rows = span([2, 3], me)
            close(got["loss"], single["loss"])
            close(got["x1"], 2 * single["x1"][rows])
            close(got["x2"], 2 * single["x2"][rows])
        for r in set(range(world)) - set(SUBGROUP):
            assert f"subgroup/{name}" not in results[r]


def test_bad_input_on_one_rank_raises_on_every_rank(ranks: Any) -> None:
    world, results = ranks
    for r, res in enumerate(results):
        msg = res["error/not_a_tensor"]
        assert msg is not None and msg.startswith("TypeError: ring_info_nce: ")
        if r == 1:
            assert "q must be a torch.Tensor; got list (this is rank 1" in msg
        else:
            assert "the inputs on ranks [1] are invalid" in msg
        msg = res["error/dim"]
        assert msg is not None and msg.startswith("ValueError: ring_info_nce: every rank must")
        dims = [DIM + 1] + [DIM] * (world - 1)
        assert f"same dimension D; got {dims} by rank (this is rank {r})" in msg
        msg = res["error/temperature"]
        assert msg is not None and "every rank must pass the same temperature" in msg
        msg = res["error/empty_rank"]
        assert msg is not None and msg.startswith("ValueError: ring_info_nce: ")
        assert ("q must have at least 1 rows" in msg) == (r == 0)
        assert "[0]" in msg


def test_group_usable_after_errors(ranks: Any) -> None:
    world, results = ranks
    for res in results:
        assert torch.equal(res["after_errors"], torch.tensor([float(sum(range(world)))]))


# ----------------------------------------------------------------------------- one process
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_one_process_equals_plain_losses(reduction: str) -> None:
    assert not dist.is_initialized()
    for name in LOSSES:
        for hp in HPARAMS:
            got = run_case(name, reduction, hp, slice(0, 7), 7, True)
            want = run_case(name, reduction, hp, slice(0, 7), 7, False)
            for key in got:
                torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-12)


def test_gradcheck_one_process() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(5, 4, generator=g, dtype=f64, requires_grad=True)
    b = torch.randn(5, 4, generator=g, dtype=f64, requires_grad=True)
    for fn in (ring.ring_info_nce, ring.ring_nt_xent):
        assert torch.autograd.gradcheck(
            lambda x, y, fn=fn: fn(x, y, temperature=0.4, reduction="none"), (a, b)
        )


def test_row_chunks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    # Blocks are scored in row chunks bounded by _CHUNK_ELEMENTS; force chunks of 2 rows.
    want = run_case("nt_xent", "mean", "default", slice(0, 7), 7, True)
    monkeypatch.setattr(ring, "_CHUNK_ELEMENTS", 2 * 14)
    got = run_case("nt_xent", "mean", "default", slice(0, 7), 7, True)
    for key in got:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-12)


def test_kernel_dispatch_glue(monkeypatch: pytest.MonkeyPatch) -> None:
    # On CUDA with Triton the blocks go through posneg._kernels; here its torch reference pair
    # stands in, so the glue (excluded diagonal, global lse, gradient accumulation) is checked.
    kernels = pytest.importorskip("posneg._kernels.reference")
    pair = (kernels.row_lse_forward_torch, kernels.row_lse_backward_torch)
    want = {name: run_case(name, "none", "default", slice(0, 7), 7, True) for name in LOSSES}
    monkeypatch.setattr(ring, "_kernels_for", lambda q, kb: pair)
    for name in LOSSES:
        got = run_case(name, "none", "default", slice(0, 7), 7, True)
        for key in got:
            torch.testing.assert_close(got[key], want[name][key], rtol=0, atol=1e-12)


def test_half_precision_runs_in_float32() -> None:
    g = torch.Generator().manual_seed(2)
    a = torch.randn(6, 8, generator=g).to(torch.bfloat16)
    b = torch.randn(6, 8, generator=g).to(torch.bfloat16)
    got = ring.ring_info_nce(a, b)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, info_nce(a, b))


def test_errors_one_process() -> None:
    z = torch.zeros(3, 4)
    with pytest.raises(TypeError, match=r"ring_info_nce: q must be a torch.Tensor; got list"):
        ring.ring_info_nce([1.0], z)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"ring_nt_xent: z2 must have shape"):
        ring.ring_nt_xent(z, torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"ring_info_nce: temperature must be > 0"):
        ring.ring_info_nce(z, z, temperature=0.0)
    with pytest.raises(ValueError, match=r"ring_nt_xent: reduction must be one of"):
        ring.ring_nt_xent(z, z, reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"ring_info_nce: the ranks must hold at least 2 rows"):
        ring.ring_info_nce(torch.zeros(1, 4), torch.zeros(1, 4))
    with pytest.raises(TypeError, match=r"ring_nt_xent: z1 must be a floating-point tensor"):
        ring.ring_nt_xent(torch.zeros(3, 4, dtype=torch.int64), z)


# ----------------------------------------------------------------------------- the official code
def test_official_local_mean_differs_with_uneven_ranks(ranks: Any) -> None:
    # Inf-CL's cal_ring_loss returns each rank's mean over its own rows; DDP then averages the
    # ranks. posneg's "mean" is the global mean. Equal ranks: the same; uneven: not.
    world, results = ranks
    for layout in ("equal", "uneven"):
        sizes = LAYOUTS[world][layout]
        single = run_case("info_nce", "mean", "default", slice(0, sum(sizes)), sum(sizes), False)
        rows = [res[f"info_nce/{layout}/none/default"]["loss"] for res in results]
        official = sum(r.mean() for r in rows) / world
        posneg_mean = results[0][f"info_nce/{layout}/mean/default"]["loss"]
        close(posneg_mean, single["loss"])
        assert bool(torch.isclose(official, single["loss"], rtol=0, atol=1e-12)) == (
            layout == "equal"
        )


def test_official_block_statistic_overflows() -> None:
    # RingProb.forward: block_lse = torch.log(torch.exp(qk).sum(dim=-1)), no max subtracted.
    g = torch.Generator().manual_seed(3)
    q = torch.randn(4, 3, generator=g)
    k = torch.randn(4, 3, generator=g)
    qk = (q * 60.0) @ (k * 2.0).T  # logits past float32's exp range (~88)
    official = torch.log(torch.exp(qk).sum(dim=-1))
    assert bool(torch.isinf(official).any())
    got = ring.ring_info_nce(q * 60.0, k * 2.0, temperature=1.0, normalize=False)
    assert bool(torch.isfinite(got))
    torch.testing.assert_close(got, info_nce(q * 60.0, k * 2.0, temperature=1.0, normalize=False))


if __name__ == "__main__":  # pragma: no cover - spawn children import this module by name
    sys.exit(pytest.main([__file__, "-q"]))
