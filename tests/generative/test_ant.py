"""ANT (Go et al., NeurIPS 2023) against the official code's behaviour.

Reference: gohyojun15/ANT_diffusion at commit 1c14183 (``interval_clustering.py``:
``snr_based_clustering``, ``tas_based_clustering``; ``util/uw_util.py``: ``initialize_cluster``,
``sample_t_batch``; ``mtl_library/uw.py``; ``train_ant_single_gpu.py`` lines 205-220;
``task_affinity_score.py``). The ``_official_*`` helpers below restate those functions' loops
(written here, not copied) so the vectorised DP is checked against the code's own recursion.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from posneg.generative.ant import (
    ANTUncertaintyWeighting,
    ant_uw_loss,
    interval_clustering,
    interval_losses,
    sample_interval_timesteps,
    task_affinity_scores,
    timestep_gradients,
    uniform_intervals,
)


def _official_dp(n: int, k: int, cost, init: float):  # type: ignore[no-untyped-def]
    """The recursion of ``snr_based_clustering`` / ``tas_based_clustering`` line by line."""
    d = np.zeros((n, k)) + init
    s = np.zeros((n, k))
    for j in range(k):
        for i in reversed(range(n)):
            if j == 0:
                d[i, j] = cost(0, i)
            elif i >= j:
                items = np.zeros(i)
                for left in range(j, i):
                    items[left] = d[left, j - 1] + cost(left + 1, i)
                items[items == 0] = np.inf
                d[i, j] = items.min()
                s[i, j] = items.argmin()
    bounds = []
    b = 0.0
    for j in reversed(range(k)):
        b = s[-1, k - 1] if j == k - 1 else s[int(b), j]
        bounds.append(b)
    rb = list(reversed(bounds))
    return [(int(rb[m]), int(rb[m + 1]) - 1 if m + 1 < k else 1000) for m in range(k)]


def _official_snr(snr: np.ndarray, k: int) -> list[tuple[int, int]]:
    def cost(left: int, right: int) -> float:
        if left == right:
            return 0.0
        center = round((left + right + 1) / 2)
        return float(np.abs(snr[left : right + 1] - snr[center]).sum())

    return _official_dp(len(snr), k, cost, 0.0)


def _official_tas(tas: np.ndarray, k: int) -> list[tuple[int, int]]:
    def cost(left: int, right: int) -> float:
        if left == right:
            return -1.0
        center = int((left + right + 1) / 2)
        return float(-tas[center, left : right + 1].sum())

    return _official_dp(len(tas), k, cost, np.inf)


def _snr(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(np.exp(rng.normal(size=n) * 3))[::-1].copy()


def _tas(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(n, 6)) + np.linspace(0, 3, n)[:, None] * rng.normal(size=6)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return g @ g.T


def _brute(n: int, k: int, cost) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    """Every split into k contiguous intervals whose first has >= 2 timesteps; half-open."""
    best, arg = np.inf, None
    for cuts in itertools.combinations(range(2, n), k - 1):
        edges = (0, *cuts, n)
        total = sum(cost(edges[m], edges[m + 1] - 1) for m in range(k))
        if total < best - 1e-12:
            best, arg = total, [(edges[m], edges[m + 1]) for m in range(k)]
    assert arg is not None
    return arg


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("n", "k"), [(12, 3), (10, 2), (9, 4), (30, 5)])
def test_snr_code_bounds_match_official(seed: int, n: int, k: int) -> None:
    snr = _snr(n, seed)
    assert interval_clustering(snr, k=k, objective="snr", bounds="code") == _official_snr(snr, k)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("n", "k"), [(12, 3), (10, 2), (9, 4), (30, 5)])
def test_tas_code_bounds_match_official(seed: int, n: int, k: int) -> None:
    tas = _tas(n, seed)
    got = interval_clustering(torch.from_numpy(tas), k=k, objective="tas", bounds="code")
    assert got == _official_tas(tas, k)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("n", "k"), [(12, 3), (8, 2), (9, 4)])
def test_dp_partition_equals_brute_force(seed: int, n: int, k: int) -> None:
    snr, tas = _snr(n, seed), _tas(n, seed)

    def snr_cost(left: int, right: int) -> float:
        c = round((left + right + 1) / 2)
        return 0.0 if left == right else float(np.abs(snr[left : right + 1] - snr[c]).sum())

    def tas_cost(left: int, right: int) -> float:
        c = int((left + right + 1) / 2)
        return -1.0 if left == right else float(-tas[c, left : right + 1].sum())

    assert interval_clustering(snr, k=k, objective="snr") == _brute(n, k, snr_cost)
    assert interval_clustering(tas, k=k, objective="tas") == _brute(n, k, tas_cost)


def test_code_bounds_shift_one_timestep_into_the_later_interval() -> None:
    """The addendum's off-by-one: the code emits (L_j, L_{j+1} - 1), the DP optimised
    [L_j + 1, L_{j+1}]; the last right end is 1000 whatever T."""
    snr = _snr(12, 0)
    part = interval_clustering(snr, k=3)
    code = interval_clustering(snr, k=3, bounds="code")
    assert part[0][0] == code[0][0] == 0
    for (s, _), (left, _) in zip(part[1:], code[1:], strict=True):
        assert left == s - 1  # timestep s - 1 moves to the later cluster
    for (_, e), (_, right) in zip(part[:-1], code[:-1], strict=True):
        assert right == e - 2  # inclusive right end, one short of the DP's last index e - 1
    assert code[-1][1] == 1000 and part[-1][1] == 12


def test_partition_covers_all_timesteps() -> None:
    parts = interval_clustering(_snr(50, 3), k=5)
    assert parts[0][0] == 0 and parts[-1][1] == 50
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    assert interval_clustering(_snr(6, 0), k=1) == [(0, 6)]


def test_snr_of_a_real_schedule_runs_at_t_1000() -> None:
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    parts = interval_clustering(abar / (1 - abar), k=5)
    assert len(parts) == 5 and parts[-1][1] == 1000
    # high-SNR timesteps dominate the absolute-deviation cost: the early intervals are short
    assert parts[0][1] - parts[0][0] < parts[-1][1] - parts[-1][0]


def test_uniform_intervals_as_initialize_cluster() -> None:
    assert uniform_intervals(1000, 5) == [(0, 200), (200, 400), (400, 600), (600, 800), (800, 1000)]
    assert uniform_intervals(10, 3) == [(0, 3), (3, 6), (6, 10)]  # int(10/3*m)


def test_sample_interval_timesteps_stratified() -> None:
    g = torch.Generator().manual_seed(0)
    intervals = [(0, 3), (3, 10), (10, 11)]
    t = sample_interval_timesteps(300, intervals, generator=g)
    assert t.dtype == torch.int64 and t.shape == (300,)
    for m, (lo, hi) in enumerate(intervals):
        block = t[m * 100 : (m + 1) * 100]
        assert int(block.min()) >= lo and int(block.max()) < hi  # randint: exclusive upper
    assert set(t[100:200].tolist()) == set(range(3, 10))
    # draw order of sample_t_batch: one randint per cluster in turn
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    ref = torch.cat([torch.randint(lo, hi, (2,), generator=g2) for lo, hi in intervals])
    assert torch.equal(sample_interval_timesteps(6, intervals, generator=g1), ref)


def test_sampler_leaves_global_rng() -> None:
    before = torch.get_rng_state()
    sample_interval_timesteps(10, uniform_intervals(100, 5), generator=torch.Generator())
    assert torch.equal(before, torch.get_rng_state())


def test_uw_loss_formula_against_loop() -> None:
    g = torch.Generator().manual_seed(1)
    loss = torch.rand(12, generator=g, dtype=torch.float64)
    s = torch.randn(3, generator=g, dtype=torch.float64)
    expected = 0.0
    for m in range(3):  # train_ant_single_gpu.py: l = mean / K; uw(l) = 0.5 (exp(-s) l + s)
        block = loss[m * 4 : (m + 1) * 4]
        mean = sum(float(v) for v in block) / 4
        expected += 0.5 * (np.exp(-float(s[m])) * mean / 3 + float(s[m]))
    assert float(ant_uw_loss(loss, s, num_intervals=3)) == pytest.approx(expected, rel=1e-12)


def test_uw_gradient_and_optimum() -> None:
    loss = torch.tensor([2.0, 2.0, 6.0, 6.0], dtype=torch.float64)
    s = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    ant_uw_loss(loss, s, num_intervals=2).backward()
    ell = torch.tensor([2.0, 6.0], dtype=torch.float64) / 2
    assert s.grad is not None
    torch.testing.assert_close(s.grad, 0.5 * (1 - torch.exp(-s.detach()) * ell))
    opt = torch.log(ell).requires_grad_(True)  # optimum s_m = log(l_m / K)
    ant_uw_loss(loss, opt, num_intervals=2).backward()
    assert opt.grad is not None
    torch.testing.assert_close(opt.grad, torch.zeros(2, dtype=torch.float64))


def test_uw_module_starts_at_zero_and_is_mean_over_k_squared() -> None:
    uw = ANTUncertaintyWeighting(num_intervals=4)
    assert torch.equal(uw.log_vars.detach(), torch.zeros(4))
    loss = torch.rand(8)
    expected = 0.5 * interval_losses(loss, num_intervals=4).sum() / 4
    torch.testing.assert_close(uw(loss), expected)
    assert "num_intervals=4" in repr(uw)


def test_task_affinity_symmetric_unit_diagonal_and_cosine() -> None:
    g = torch.randn(5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tas = task_affinity_scores(g)
    torch.testing.assert_close(tas, tas.T)
    torch.testing.assert_close(torch.diagonal(tas), torch.ones(5, dtype=torch.float64))
    for i in range(5):
        for j in range(5):
            ref = float(g[i] @ g[j]) / float(g[i].norm() * g[j].norm())
            assert float(tas[i, j]) == pytest.approx(ref, rel=1e-9)


def test_timestep_gradients_accumulate_over_batches() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False)
    batches = [torch.ones(2, 3), 2 * torch.ones(2, 3)]

    def loss_at(x: torch.Tensor, t: int) -> torch.Tensor:
        return (t + 1) * model(x).mean()

    grads = timestep_gradients(model, loss_at, batches=batches, timesteps=[0, 2])
    torch.testing.assert_close(grads, torch.tensor([[3.0, 3.0, 3.0], [9.0, 9.0, 9.0]]))
    assert model.weight.grad is None
    tas = task_affinity_scores(grads)
    torch.testing.assert_close(tas, torch.ones(2, 2, dtype=torch.float64), atol=1e-6, rtol=0)


def test_errors_name_function_and_argument() -> None:
    with pytest.raises(ValueError, match="interval_clustering: k must be <= T - 1"):
        interval_clustering(_snr(4, 0), k=4)
    with pytest.raises(ValueError, match="interval_clustering: scores \\(SNR\\) must be monotone"):
        interval_clustering(np.array([1.0, 3.0, 2.0]), k=2)
    with pytest.raises(ValueError, match="interval_clustering: objective must be one of"):
        interval_clustering(_snr(5, 0), k=2, objective="fid")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scores for objective='tas' must have shape"):
        interval_clustering(_snr(5, 0), k=2, objective="tas")
    with pytest.raises(
        ValueError, match="sample_interval_timesteps: batch_size must be a multiple"
    ):
        sample_interval_timesteps(7, uniform_intervals(100, 5))
    with pytest.raises(ValueError, match="sample_interval_timesteps: each interval"):
        sample_interval_timesteps(2, [(3, 3)])
    with pytest.raises(ValueError, match="uniform_intervals: k must be <="):
        uniform_intervals(3, 5)
    with pytest.raises(ValueError, match="ant_uw_loss: log_vars must have shape"):
        ant_uw_loss(torch.ones(4), torch.zeros(3), num_intervals=2)
    with pytest.raises(ValueError, match="interval_losses: loss must have shape"):
        interval_losses(torch.ones(2, 2), num_intervals=2)
    with pytest.raises(ValueError, match="ANTUncertaintyWeighting: num_intervals"):
        ANTUncertaintyWeighting(num_intervals=0)
