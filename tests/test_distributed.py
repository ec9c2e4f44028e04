"""gather_with_grad under torch.distributed: two gloo processes on CPU, float64.

For every objective in posneg.losses, each rank holds half the batch, encodes it with a shared
linear encoder, gathers the embeddings with ``gather_with_grad`` and computes the loss on the
gathered batch. Against one process computing the loss on the concatenated batch:

* the loss is the same on every rank;
* the encoder's gradients averaged over ranks (what DDP does) equal the single-process ones;
* parameters applied after the gather (AMCLLoss's heads) get the single-process gradient;
* the gradient reaching a rank's own inputs is ``world_size`` times the single-process slice
  (the documented contract: backward sums the incoming gradient over ranks).

One spawn (module fixture) runs every case; the parametrised tests read its results.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from gloo_kit import run_torch_ranks, save_rank_result
from posneg import distributed as pd

WORLD = 2
PER_RANK = 4
IN_DIM = 5
DIM = 6
DEADLINE_S = 120.0
TEARDOWN_GRACE_S = 15.0
f64 = torch.float64

Objective = Callable[[Any, torch.Tensor, torch.Tensor, torch.Tensor, Any], torch.Tensor]

# name -> (module, loss of the gathered z1, z2 (B, DIM), labels (B,), aux module or None)
OBJECTIVES: dict[str, tuple[str, Objective]] = {
    "info_nce": ("posneg.losses.info_nce", lambda m, a, b, y, aux: m.info_nce(a, b)),
    "info_nce_symmetric": (
        "posneg.losses.info_nce",
        lambda m, a, b, y, aux: m.info_nce(a, b, symmetric=True, temperature=0.2),
    ),
    "nt_xent": ("posneg.losses.info_nce", lambda m, a, b, y, aux: m.nt_xent(a, b)),
    "dcl": ("posneg.losses.dcl", lambda m, a, b, y, aux: m.dcl(a, b)),
    "dclw": ("posneg.losses.dcl", lambda m, a, b, y, aux: m.dclw(a, b)),
    "hcl": ("posneg.losses.hcl", lambda m, a, b, y, aux: m.hcl(a, b)),
    "hcl_cross_modal": ("posneg.losses.hcl", lambda m, a, b, y, aux: m.hcl_cross_modal(a, b)),
    "supcon": (
        "posneg.losses.supcon",
        lambda m, a, b, y, aux: m.supcon(torch.cat([a, b]), torch.cat([y, y])),
    ),
    "cacr": ("posneg.losses.cacr", lambda m, a, b, y, aux: m.cacr(torch.stack([a, b]))),
    "amcl": ("posneg.losses.amcl", lambda m, a, b, y, aux: aux(a, b)),
}
# Not a posneg objective: each rank scores only its own rows against the gathered keys (the
# "local loss" layout). DDP's average of the rank losses' gradients is the global mean's.
LOCAL_ROWS = "local_rows_cross_entropy"


def make_aux(name: str, module: Any) -> Any:
    if name != "amcl":
        return None
    g = torch.Generator().manual_seed(3)
    return module.AMCLLoss(
        DIM, num_heads=2, hidden_dim=7, out_dim=4, temperature_hidden_dim=5, generator=g
    ).to(f64)


def make_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.nn.Linear]:
    g = torch.Generator().manual_seed(0)
    n = WORLD * PER_RANK
    a1 = torch.randn(n, IN_DIM, generator=g, dtype=f64)
    a2 = a1 + 0.3 * torch.randn(n, IN_DIM, generator=g, dtype=f64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 3])
    enc = torch.nn.Linear(IN_DIM, DIM, dtype=f64)
    with torch.no_grad():
        enc.weight.copy_(torch.randn(DIM, IN_DIM, generator=g, dtype=f64))
        enc.bias.copy_(torch.randn(DIM, generator=g, dtype=f64))
    return a1, a2, labels, enc


def run_case(
    name: str, rows: slice, gather: Callable[[torch.Tensor], torch.Tensor]
) -> dict[str, Any]:
    """Loss and gradients of one objective on ``rows`` of the batch, gathered by ``gather``."""
    a1, a2, labels, enc = make_data()
    x1 = a1[rows].clone().requires_grad_()
    x2 = a2[rows].clone().requires_grad_()
    z1, z2 = gather(enc(x1)), gather(enc(x2))
    y = gather(labels[rows])
    if name == LOCAL_ROWS:
        local = F.normalize(enc(x1), dim=1)
        keys = F.normalize(z2, dim=1)
        target = torch.arange(rows.start, rows.stop)
        loss = F.cross_entropy(local @ keys.T / 0.1, target)
        aux = None
    else:
        module_name, objective = OBJECTIVES[name]
        module = importlib.import_module(module_name)
        aux = make_aux(name, module)
        loss = objective(module, z1, z2, y, aux)
    loss.backward()
    out: dict[str, Any] = {
        "loss": loss.detach(),
        "enc_weight": enc.weight.grad,
        "enc_bias": enc.bias.grad,
        "x1": x1.grad,
        "x2": x2.grad,
    }
    if aux is not None:
        out["aux"] = {k: p.grad for k, p in aux.named_parameters()}
    return out


def available() -> list[str]:
    names = []
    for name, (module_name, _) in OBJECTIVES.items():
        try:
            importlib.import_module(module_name)
        except ImportError:
            continue
        names.append(name)
    return names


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
        results: dict[str, Any] = {"rank": pd.rank(), "world_size": pd.world_size()}
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        for name in [*available(), LOCAL_ROWS]:
            results[name] = run_case(name, rows, pd.gather_with_grad)

        # Unequal row counts: rank 0 holds 3 rows, rank 1 holds 5.
        n = 3 if rank == 0 else 5
        x = (torch.arange(n * 2, dtype=f64).reshape(n, 2) + 100 * rank).requires_grad_()
        gathered = pd.gather_with_grad(x)
        weights = torch.arange(16, dtype=f64).reshape(8, 2)
        (gathered * weights).sum().backward()
        results["uneven"] = {"gathered": gathered.detach(), "grad": x.grad}

        # Ranks that disagree beyond dim 0 all raise the same error (no hang).
        try:
            pd.gather_with_grad(torch.zeros(2, 3 if rank == 0 else 4))
            results["mismatch"] = None
        except ValueError as err:
            results["mismatch"] = str(err)

        # Bad input on ONE rank only: every rank still raises (the checks follow the shape
        # exchange, so no rank is left inside a collective) and the group stays usable.
        one_bad: dict[str, Any] = {
            "not_a_tensor": [1.0] if rank == 1 else torch.zeros(2, 3),
            "zero_dim": torch.tensor(1.0) if rank == 0 else torch.zeros(2, 3),
            "nine_dims": torch.zeros((1,) * 9) if rank == 1 else torch.zeros(2, 3),
        }
        for case, x_bad in one_bad.items():
            try:
                pd.gather_with_grad(x_bad)
                results[case] = None
            except (TypeError, ValueError) as err:
                results[case] = f"{type(err).__name__}: {err}"
        results["after_errors"] = pd.gather_with_grad(torch.tensor([[rank]]))
        save_rank_result(results, out_dir, rank)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    out = tmp_path_factory.mktemp("dist")
    return run_torch_ranks(_worker, WORLD, out, deadline_s=DEADLINE_S, grace_s=TEARDOWN_GRACE_S)


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def check_against_single(name: str, ranks: list[dict[str, Any]]) -> None:
    single = run_case(name, slice(0, WORLD * PER_RANK), lambda t: t)
    for r, res in enumerate(ranks):
        got = res[name]
        rows = slice(r * PER_RANK, (r + 1) * PER_RANK)
        if name != LOCAL_ROWS:  # every rank computed the same loss: W times the slice
            close(got["loss"], single["loss"])
            close(got["x1"], WORLD * single["x1"][rows])
            close(got["x2"], WORLD * single["x2"][rows])
    for key in ("enc_weight", "enc_bias"):  # DDP averages parameter gradients over ranks
        close(sum(res[name][key] for res in ranks) / WORLD, single[key])
    if "aux" in single:
        for key, grad in single["aux"].items():
            close(sum(res[name]["aux"][key] for res in ranks) / WORLD, grad)
            close(ranks[0][name]["aux"][key], grad)  # applied after the gather: full batch


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_objective_matches_single_process(name: str, ranks: list[dict[str, Any]]) -> None:
    pytest.importorskip(OBJECTIVES[name][0], reason=f"{OBJECTIVES[name][0]} is not written yet")
    assert name in ranks[0], f"{name} was not run by the workers"
    check_against_single(name, ranks)


def test_local_rows_layout(ranks: list[dict[str, Any]]) -> None:
    # Global loss = mean over ranks of the local losses (equal row counts).
    single = run_case(LOCAL_ROWS, slice(0, WORLD * PER_RANK), lambda t: t)
    close(sum(res[LOCAL_ROWS]["loss"] for res in ranks) / WORLD, single["loss"])
    check_against_single(LOCAL_ROWS, ranks)


def test_rank_helpers_inside_the_group(ranks: list[dict[str, Any]]) -> None:
    assert [res["rank"] for res in ranks] == list(range(WORLD))
    assert all(res["world_size"] == WORLD for res in ranks)


def test_uneven_row_counts(ranks: list[dict[str, Any]]) -> None:
    expected = torch.cat(
        [torch.arange(6, dtype=f64).reshape(3, 2), torch.arange(10, dtype=f64).reshape(5, 2) + 100]
    )
    weights = torch.arange(16, dtype=f64).reshape(8, 2)
    for r, res in enumerate(ranks):
        assert torch.equal(res["uneven"]["gathered"], expected)
        rows = slice(0, 3) if r == 0 else slice(3, 8)
        assert torch.equal(res["uneven"]["grad"], WORLD * weights[rows])


def test_bad_input_on_one_rank_raises_on_every_rank(ranks: list[dict[str, Any]]) -> None:
    for r, res in enumerate(ranks):
        msg = res["not_a_tensor"]
        assert msg is not None and msg.startswith("TypeError: gather_with_grad: x must be a")
        assert "ranks without a tensor: [1]" in msg
        assert ("got list" in msg) == (r == 1)
        for case, ndims in (("zero_dim", "[0, 2]"), ("nine_dims", "[2, 9]")):
            msg = res[case]
            assert msg is not None and msg.startswith("ValueError: gather_with_grad: x must have")
            assert "between 1 and 8 dimensions on every rank; got shape" in msg
            assert f"on rank {r} (dimensions by rank {ndims})" in msg


def test_group_usable_after_errors(ranks: list[dict[str, Any]]) -> None:
    # A rank left inside a collective by an error would pair this gather with the wrong one.
    for res in ranks:
        assert torch.equal(res["after_errors"], torch.tensor([[0], [1]]))


def test_mismatched_shapes_raise_on_every_rank(ranks: list[dict[str, Any]]) -> None:
    for res in ranks:
        assert res["mismatch"] is not None
        assert "same shape beyond dim 0" in res["mismatch"]
        assert "[(2, 3), (2, 4)]" in res["mismatch"]


# ----------------------------------------------------------------------------- one process
def test_identity_without_process_group() -> None:
    assert not dist.is_initialized()
    x = torch.randn(3, 4, requires_grad=True)
    assert pd.gather_with_grad(x) is x
    assert pd.rank() == 0 and pd.world_size() == 1 and not pd.is_distributed()


def test_type_error() -> None:
    with pytest.raises(TypeError, match=r"gather_with_grad: x must be a torch.Tensor; got list"):
        pd.gather_with_grad([1.0])  # type: ignore[arg-type]


if __name__ == "__main__":  # pragma: no cover - spawn children import this module by name
    sys.exit(pytest.main([__file__, "-q"]))
