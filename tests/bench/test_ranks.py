"""posneg.bench._ranks: mean ranks, the Friedman statistic, Nemenyi's CD (Demšar, JMLR 2006)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from posneg.bench import _ranks
from posneg.bench._ranks import cd_plot, nemenyi_cd, rank_test

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _naive_friedman(ranks: list[list[float]]) -> float:
    """Demšar's eq. (chi2_F = 12 N / (k (k+1)) [sum_j R_j^2 - k (k+1)^2 / 4]), float64 loops."""
    n, k = len(ranks), len(ranks[0])
    mean = [sum(r[j] for r in ranks) / n for j in range(k)]
    return 12 * n / (k * (k + 1)) * (sum(m * m for m in mean) - k * (k + 1) ** 2 / 4)


def test_mean_ranks_and_friedman_match_the_formula() -> None:
    scores = {
        "d1": {"a": 0.9, "b": 0.8, "c": 0.7},
        "d2": {"a": 0.6, "b": 0.9, "c": 0.5},
        "d3": {"a": 0.7, "b": 0.6, "c": 0.5},
        "d4": {"a": 0.8, "b": 0.7, "c": 0.9},
    }
    t = rank_test(scores, ["a", "b", "c"])
    ranks = [[1.0, 2.0, 3.0], [2.0, 1.0, 3.0], [1.0, 2.0, 3.0], [2.0, 3.0, 1.0]]
    assert t.mean_ranks == pytest.approx((1.5, 2.0, 2.5))
    assert t.n_sets == 4
    assert t.statistic == pytest.approx(_naive_friedman(ranks))
    assert t.cd == pytest.approx(2.343 * math.sqrt(3 * 4 / (6 * 4)), abs=1e-3)


def test_ties_share_the_mean_rank_and_nan_sets_are_left_out() -> None:
    scores = {"d1": {"a": 1.0, "b": 1.0, "c": 0.0}, "d2": {"a": math.nan, "b": 1.0, "c": 0.0}}
    t = rank_test(scores, ["a", "b", "c"])
    assert t.n_sets == 1 and t.mean_ranks == (1.5, 1.5, 3.0)
    assert math.isnan(t.p_value)  # one set: no Friedman test
    empty = rank_test({"d": {"a": math.nan}}, ["a"])
    assert empty.n_sets == 0 and math.isnan(empty.mean_ranks[0])


@pytest.mark.parametrize(("k", "q"), [(2, 1.960), (3, 2.343), (5, 2.728), (8, 3.031), (10, 3.164)])
def test_nemenyi_cd_uses_demsar_table_5(k: int, q: float) -> None:
    assert nemenyi_cd(k, 10) == pytest.approx(q * math.sqrt(k * (k + 1) / 60), abs=1e-3)
    assert math.isnan(nemenyi_cd(1, 10)) and math.isnan(nemenyi_cd(3, 0))


def test_cliques_are_maximal_runs_within_the_cd() -> None:
    assert _ranks._cliques([1.0, 1.5, 2.4, 3.0], 1.0) == [(0, 1), (1, 2), (2, 3)]
    assert _ranks._cliques([1.0, 1.5, 1.8, 3.0], 1.0) == [(0, 2)]
    assert _ranks._cliques([1.0, 3.0], 1.0) == []


def test_cd_plot_writes_a_png(tmp_path: Path) -> None:
    t = rank_test({"d1": {"a": 1.0, "b": 0.5}, "d2": {"a": 0.9, "b": 0.2}}, ["a", "b"])
    path = cd_plot(tmp_path / "cd.png", [("knn / AUC", t)], title="test")
    assert path.read_bytes()[:8] == PNG_MAGIC
