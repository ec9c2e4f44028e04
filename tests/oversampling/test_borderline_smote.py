"""BorderlineSMOTE against imbalanced-learn: danger sets, counts, segments, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from posneg.oversampling import BorderlineSMOTE

imblearn_over = pytest.importorskip("imblearn.over_sampling")


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three overlapping classes, so every class has safe, danger and noise samples."""
    rng = np.random.default_rng(seed)
    X = np.vstack(
        [
            rng.standard_normal((200, 3)),
            rng.standard_normal((50, 3)) + 0.8,
            rng.standard_normal((30, 3)) - 0.8,
        ]
    )
    y = np.repeat([0, 1, 2], [200, 50, 30])
    return X, y


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _naive_danger(X: np.ndarray, y: np.ndarray, cls: int, m: int) -> np.ndarray:
    """Rows of class ``cls`` with m/2 <= #foreign among their m nearest others < m (a loop)."""
    out = []
    for i in np.flatnonzero(y == cls):
        d = ((X - X[i]) ** 2).sum(1)
        d[i] = np.inf
        nn = np.argsort(d)[:m]
        foreign = int((y[nn] != cls).sum())
        if m / 2 <= foreign < m:
            out.append(i)
    return np.array(out, dtype=np.int64)


def _segments(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point: a mask (P, S) of the segments a[s] -> b[s] it lies on, and the gaps."""
    d = b - a
    rel = points[:, None, :] - a[None]
    t = (rel * d[None]).sum(-1) / (d * d).sum(-1)[None]
    resid = np.linalg.norm(rel - t[..., None] * d[None], axis=-1)
    return (resid < 1e-9) & (t >= -1e-12) & (t < 1), t


# 1. formula ------------------------------------------------------------------------------------


def test_danger_set_matches_the_rule() -> None:
    X, y = _data()
    s = BorderlineSMOTE(m_neighbors=8)
    s.fit_resample(X, y, generator=_g())
    for cls in (1, 2):
        np.testing.assert_array_equal(s.in_danger_indices_[cls], _naive_danger(X, y, cls, 8))


# 2. reference ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["borderline-1", "borderline-2"])
@pytest.mark.parametrize("strategy", ["auto", "minority", {1: 120}])
def test_danger_set_and_counts_equal_imblearn(kind: str, strategy: object) -> None:
    X, y = _data()
    ours = BorderlineSMOTE(kind=kind, sampling_strategy=strategy, m_neighbors=9, k_neighbors=4)
    _, y_res = ours.fit_resample(X, y, generator=_g())
    ref = imblearn_over.BorderlineSMOTE(
        kind=kind, sampling_strategy=strategy, m_neighbors=9, k_neighbors=4, random_state=0
    )
    _, y_ref = ref.fit_resample(X, y)
    np.testing.assert_array_equal(y_res, y_ref)
    assert sorted(ours.in_danger_indices_) == sorted(ref.in_danger_indices)
    for cls, rows in ref.in_danger_indices.items():
        np.testing.assert_array_equal(ours.in_danger_indices_[cls], rows)


def test_borderline1_points_on_segments_between_danger_and_class_neighbours() -> None:
    X, y = _data(1)
    s = BorderlineSMOTE(kind="borderline-1", k_neighbors=3, sampling_strategy={1: 90})
    X_res, _ = s.fit_resample(X, y, generator=_g(2))
    cls_rows = np.flatnonzero(y == 1)
    danger = s.in_danger_indices_[1]
    nn = NearestNeighbors(n_neighbors=4).fit(X[cls_rows]).kneighbors(X[danger])[1][:, 1:]
    a = np.repeat(X[danger], 3, axis=0)
    b = X[cls_rows[nn.reshape(-1)]]
    on, _ = _segments(X_res[len(X) :], a, b)
    assert on.any(1).all(), "a synthetic point is on no danger-to-class-neighbour segment"


def test_borderline2_foreign_neighbours_get_at_most_half_the_gap() -> None:
    X, y = _data(2)
    s = BorderlineSMOTE(kind="borderline-2", k_neighbors=3, sampling_strategy={1: 150})
    X_res, _ = s.fit_resample(X, y, generator=_g(3))
    danger = s.in_danger_indices_[1]
    nn = NearestNeighbors(n_neighbors=4).fit(X).kneighbors(X[danger])[1][:, 1:].reshape(-1)
    a, b = np.repeat(X[danger], 3, axis=0), X[nn]
    on, t = _segments(X_res[len(X) :], a, b)
    assert on.any(1).all(), "a synthetic point is on no danger-to-neighbour segment"
    foreign = y[nn] != 1
    # points that lie only on danger-to-foreign segments: their gap u * v is below 0.5
    only_foreign = on.any(1) & ~(on & ~foreign[None]).any(1)
    first = on.argmax(1)
    gaps = t[np.arange(len(t)), first][only_foreign]
    assert len(gaps) > 10 and gaps.max() < 0.5


# 3. properties ---------------------------------------------------------------------------------


def test_tensor_path_determinism_and_rng() -> None:
    X, y = _data()
    Xt, yt = torch.from_numpy(X).float(), torch.from_numpy(y)
    before = torch.get_rng_state()
    a = BorderlineSMOTE(kind="borderline-2").fit_resample(Xt, yt, generator=_g(4))
    b = BorderlineSMOTE(kind="borderline-2").fit_resample(Xt, yt, generator=_g(4))
    assert torch.equal(before, torch.get_rng_state())
    assert torch.equal(a[0], b[0]) and a[0].dtype == torch.float32
    s = BorderlineSMOTE()
    s.fit_resample(Xt, yt, generator=_g())
    assert isinstance(s.in_danger_indices_[1], torch.Tensor)


def test_no_danger_rows_means_no_new_samples() -> None:
    """Well-separated classes: no minority row is in danger, nothing is generated."""
    rng = np.random.default_rng(0)
    X = np.vstack([rng.standard_normal((60, 2)), rng.standard_normal((20, 2)) + 50])
    y = np.repeat([0, 1], [60, 20])
    s = BorderlineSMOTE(k_neighbors=3, m_neighbors=5)
    X_res, y_res = s.fit_resample(X, y, generator=_g())
    assert X_res.shape == X.shape and s.in_danger_indices_ == {}
    _, y_ref = imblearn_over.BorderlineSMOTE(k_neighbors=3, m_neighbors=5).fit_resample(X, y)
    np.testing.assert_array_equal(y_res, y_ref)


def test_state_dict_round_trip_and_repr() -> None:
    X, y = _data()
    s = BorderlineSMOTE(kind="borderline-2", m_neighbors=7)
    s.fit_resample(X, y, generator=_g())
    t = BorderlineSMOTE()
    t.load_state_dict(s.state_dict())
    assert t.kind == "borderline-2" and t.in_danger_indices_.keys() == s.in_danger_indices_.keys()
    assert "kind='borderline-2'" in repr(s) and "m_neighbors=7" in repr(s)


# 4. errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"kind": "borderline-3"}, ValueError, "kind must be one of"),
        ({"m_neighbors": 0}, ValueError, "m_neighbors must be >= 1"),
        ({"k_neighbors": -1}, ValueError, "k_neighbors must be >= 1"),
        ({"sampling_strategy": "nope"}, ValueError, "sampling_strategy must be one of"),
    ],
)
def test_hyperparameter_errors(kwargs: dict, err: type, match: str) -> None:
    sampler = BorderlineSMOTE(**kwargs)  # the constructor only stores; fit_resample checks
    X, y = _data()
    with pytest.raises(err, match=f"BorderlineSMOTE: {match}"):
        sampler.fit_resample(X, y)


def test_data_errors() -> None:
    X, y = _data()
    with pytest.raises(ValueError, match="class 2 has 30"):
        BorderlineSMOTE(k_neighbors=30).fit_resample(X, y)
    with pytest.raises(ValueError, match=r"m_neighbors=400 must be below the number of samples"):
        BorderlineSMOTE(m_neighbors=400).fit_resample(X, y)
    with pytest.raises(ValueError, match=r"k_neighbors=300 must be below"):
        BorderlineSMOTE(kind="borderline-2", k_neighbors=300).fit_resample(X, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        BorderlineSMOTE().fit_resample(X, np.zeros(len(X), dtype=int))
