"""SMOTENC against imbalanced-learn: median std, neighbours, categorical votes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from posneg.oversampling import SMOTENC
from posneg.oversampling._neighbors import kneighbors

imblearn_over = pytest.importorskip("imblearn.over_sampling")


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Columns: 3 continuous, then categorical codes with 3 and 4 values (column order mixed)."""
    rng = np.random.default_rng(seed)
    n = np.array([150, 40, 30])
    y = np.repeat([0, 1, 2], n)
    cont = rng.standard_normal((n.sum(), 3)) + y[:, None] * 0.7
    cat_a = rng.integers(0, 3, n.sum()).astype(float)
    cat_b = (rng.integers(0, 4, n.sum()) * 10 + 5).astype(float)  # values 5, 15, 25, 35
    X = np.column_stack([cont[:, 0], cat_a, cont[:, 1], cont[:, 2], cat_b])
    return X, y


CAT = [1, 4]
CONT = [0, 2, 3]


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _encoded(X_class: np.ndarray, med: float) -> np.ndarray:
    """Continuous columns plus each categorical column one-hot scaled by med / sqrt(2)."""
    parts = [X_class[:, CONT]]
    for c in CAT:
        values = np.unique(X_class[:, c])
        parts.append((X_class[:, c : c + 1] == values[None]) * (med / np.sqrt(2)))
    return np.hstack(parts)


# 1. formula ------------------------------------------------------------------------------------


def test_distance_is_euclidean_plus_median_std_per_mismatch() -> None:
    X, y = _data()
    Xc = X[y == 1]
    med = float(np.median(Xc[:, CONT].std(0)))
    enc = _encoded(Xc, med)
    i, j = 0, 5
    naive = ((Xc[i, CONT] - Xc[j, CONT]) ** 2).sum() + med**2 * (Xc[i, CAT] != Xc[j, CAT]).sum()
    assert np.isclose(((enc[i] - enc[j]) ** 2).sum(), naive)


def test_categorical_values_are_the_neighbours_mode() -> None:
    X, y = _data(1)
    s = SMOTENC(CAT, k_neighbors=4, sampling_strategy={1: 100})
    X_res, _ = s.fit_resample(X, y, generator=_g(1))
    Xc = X[y == 1]
    nn = NearestNeighbors(n_neighbors=5).fit(_encoded(Xc, s.median_std_[1]))
    nn_idx = nn.kneighbors(_encoded(Xc, s.median_std_[1]))[1][:, 1:]
    for p in X_res[len(X) :]:
        # the base row: the continuous part lies on a segment from it to one of its neighbours
        bases = []
        for i in range(len(Xc)):
            for j in nn_idx[i]:
                d = Xc[j, CONT] - Xc[i, CONT]
                t = (p[CONT] - Xc[i, CONT]) @ d / (d @ d)
                if np.linalg.norm(p[CONT] - Xc[i, CONT] - t * d) < 1e-9 and 0 <= t < 1:
                    bases.append(i)
        assert bases
        ok_any = False
        for i in bases:  # a point on a shared segment has two candidate bases
            votes_ok = True
            for c in CAT:
                values, counts = np.unique(Xc[nn_idx[i], c], return_counts=True)
                if p[c] not in values[counts == counts.max()]:
                    votes_ok = False
            ok_any |= votes_ok
        assert ok_any, "a categorical value is not a most frequent value among the neighbours"


# 2. reference ----------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["auto", "minority", {2: 60}])
def test_counts_and_median_std_equal_imblearn(strategy: object) -> None:
    X, y = _data()
    ours = SMOTENC(CAT, sampling_strategy=strategy)
    X_res, y_res = ours.fit_resample(X, y, generator=_g())
    ref = imblearn_over.SMOTENC(CAT, sampling_strategy=strategy, random_state=0)
    X_ref, y_ref = ref.fit_resample(X, y)
    np.testing.assert_array_equal(y_res, y_ref)
    assert X_res.shape == X_ref.shape
    assert ours.median_std_.keys() == ref.median_std_.keys()
    for cls in ref.median_std_:
        assert np.isclose(ours.median_std_[cls], ref.median_std_[cls], rtol=1e-12)
    np.testing.assert_array_equal(ours.categorical_features_, ref.categorical_features_)


def test_neighbours_equal_sklearn_on_the_encoding() -> None:
    X, y = _data(2)
    Xc = X[y == 2]
    med = float(np.median(Xc[:, CONT].std(0)))
    enc = _encoded(Xc, med)
    ref = NearestNeighbors(n_neighbors=6).fit(enc).kneighbors(enc)[1][:, 1:]
    ours = kneighbors(torch.from_numpy(enc), 5).numpy()
    np.testing.assert_array_equal(np.sort(ours, 1), np.sort(ref, 1))


def test_new_categorical_values_exist_in_the_class() -> None:
    X, y = _data(3)
    X_res, y_res = SMOTENC(CAT).fit_resample(X, y, generator=_g())
    for cls in (1, 2):
        synth = X_res[len(X) :][y_res[len(X) :] == cls]
        for c in CAT:
            assert set(np.unique(synth[:, c])) <= set(np.unique(X[y == cls, c]))


# 3. properties ---------------------------------------------------------------------------------


def test_mask_and_negative_indices_equivalent() -> None:
    X, y = _data()
    mask = np.zeros(5, dtype=bool)
    mask[CAT] = True
    a = SMOTENC(mask).fit_resample(X, y, generator=_g(5))[0]
    b = SMOTENC([1, -1]).fit_resample(X, y, generator=_g(5))[0]
    np.testing.assert_array_equal(a, b)


def test_tensor_path_dtype_and_rng() -> None:
    X, y = _data()
    Xt, yt = torch.from_numpy(X).float(), torch.from_numpy(y)
    before = torch.get_rng_state()
    a = SMOTENC(CAT).fit_resample(Xt, yt, generator=_g(2))
    b = SMOTENC(CAT).fit_resample(Xt, yt, generator=_g(2))
    assert torch.equal(before, torch.get_rng_state())
    assert torch.equal(a[0], b[0]) and a[0].dtype == torch.float32
    assert torch.equal(a[0][: len(X)], Xt)


def test_state_dict_and_repr() -> None:
    X, y = _data()
    s = SMOTENC(CAT, k_neighbors=3)
    s.fit_resample(X, y, generator=_g())
    t = SMOTENC([0])
    t.load_state_dict(s.state_dict())
    assert t.median_std_ == s.median_std_ and t.categorical_features == CAT
    assert "categorical_features=[1, 4]" in repr(s)


# 4. errors -------------------------------------------------------------------------------------


def test_errors() -> None:
    X, y = _data()
    with pytest.raises(ValueError, match="every column is categorical"):
        SMOTENC([0, 1, 2, 3, 4]).fit_resample(X, y)
    with pytest.raises(ValueError, match=r"indices must be in \[0, 5\)"):
        SMOTENC([7]).fit_resample(X, y)
    with pytest.raises(ValueError, match="boolean mask must have length D=5"):
        SMOTENC([True, False]).fit_resample(X, y)
    with pytest.raises(ValueError, match="non-empty list"):
        SMOTENC([]).fit_resample(X, y)
    with pytest.raises(TypeError, match="must hold int column indices"):
        SMOTENC([1.5]).fit_resample(X, y)
    with pytest.raises(TypeError, match="categorical_features must be a list"):
        SMOTENC("auto").fit_resample(X, y)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="class 2 has 30"):
        SMOTENC(CAT, k_neighbors=30).fit_resample(X, y)
    with pytest.raises(ValueError, match="NaN or inf"):
        X_bad = X.copy()
        X_bad[0, 1] = np.nan
        SMOTENC(CAT).fit_resample(X_bad, y)
