"""Input and output types of the over-samplers (``posneg.oversampling._adapt``).

Every form is compared with the numpy path on the same data and seed: the values must be the
same, only the container changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from posneg.oversampling import ADASYN, SMOTE, SMOTENC, BorderlineSMOTE

pd = pytest.importorskip("pandas")
sparse = pytest.importorskip("scipy.sparse")

SAMPLERS = [
    lambda: SMOTE(k_neighbors=3, random_state=0),
    lambda: BorderlineSMOTE(k_neighbors=3, m_neighbors=6, random_state=0),
    lambda: ADASYN(n_neighbors=3, random_state=0),
    lambda: SMOTENC([3], k_neighbors=3, random_state=0),
]


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.standard_normal((50, 4)), rng.standard_normal((20, 4)) + 0.7])
    X[:, 3] = rng.integers(0, 3, 70)
    return X, np.array([0] * 50 + [1] * 20)


@pytest.mark.parametrize("make", SAMPLERS)
def test_dataframe_and_series_in_and_out(make: Any) -> None:
    X, y = _data()
    X_ref, y_ref = make().fit_resample(X, y)
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"], index=np.arange(100, 170))
    df["b"] = df["b"].astype(np.float32)
    X_df, y_s = make().fit_resample(df, pd.Series(y, name="label", dtype="int32"))
    assert isinstance(X_df, pd.DataFrame) and isinstance(y_s, pd.Series)
    assert X_df.columns.tolist() == ["a", "b", "c", "d"]
    assert X_df.dtypes["b"] == np.float32 and X_df.dtypes["a"] == np.float64
    assert y_s.name == "label" and y_s.dtype == np.int32
    assert X_df.index.tolist() == list(range(len(X_df)))  # a fresh index, as imbalanced-learn
    np.testing.assert_allclose(X_df.to_numpy(), X_ref, rtol=1e-6, atol=1e-6)  # b: float32
    np.testing.assert_array_equal(y_s.to_numpy(), y_ref)


def test_one_column_dataframe_y_and_string_labels() -> None:
    X, y = _data()
    labels = np.where(y == 1, "rare", "common")
    X_ref, y_ref = SMOTE(random_state=0).fit_resample(X, labels)
    assert set(y_ref.tolist()) == {"rare", "common"} and (y_ref == "rare").sum() == 50
    y_df = pd.DataFrame({"target": labels})
    X_res, y_res = SMOTE(random_state=0).fit_resample(X, y_df)
    assert isinstance(y_res, pd.DataFrame) and y_res.columns.tolist() == ["target"]
    np.testing.assert_array_equal(y_res["target"].to_numpy(), y_ref)
    np.testing.assert_array_equal(X_res, X_ref)
    cat = pd.Series(pd.Categorical(labels), name="c")
    _, y_cat = SMOTE(random_state=0).fit_resample(X, cat)
    assert isinstance(y_cat.dtype, pd.CategoricalDtype) and y_cat.tolist() == y_ref.tolist()
    sampler = SMOTE(sampling_strategy={"rare": 30}, random_state=0)
    _, y_dict = sampler.fit_resample(X, labels)
    assert (y_dict == "rare").sum() == 30 and list(sampler.sampling_strategy_) == ["rare"]


@pytest.mark.parametrize("make", SAMPLERS)
def test_lists_in_lists_out(make: Any) -> None:
    X, y = _data()
    X_ref, y_ref = make().fit_resample(X, y)
    X_list, y_list = make().fit_resample(X.tolist(), y.tolist())
    assert isinstance(X_list, list) and isinstance(y_list, list)
    np.testing.assert_array_equal(np.asarray(X_list), X_ref)
    assert y_list == y_ref.tolist()


@pytest.mark.parametrize("kind", ["csr_matrix", "csc_matrix", "csr_array"])
def test_sparse_in_same_sparse_type_out(kind: str) -> None:
    X, y = _data()
    X[np.abs(X) < 0.5] = 0.0
    X_ref, y_ref = SMOTE(random_state=0).fit_resample(X, y)
    X_sp, y_sp = SMOTE(random_state=0).fit_resample(getattr(sparse, kind)(X), y)
    assert type(X_sp) is getattr(sparse, kind)
    np.testing.assert_array_equal(X_sp.toarray(), X_ref)
    np.testing.assert_array_equal(y_sp, y_ref)


def test_sparse_dataframe_stays_sparse() -> None:
    X, y = _data()
    df = pd.DataFrame(X, columns=list("abcd")).astype(pd.SparseDtype(float, 0.0))
    X_ref, _ = ADASYN(random_state=0).fit_resample(X, y)
    X_res, _ = ADASYN(random_state=0).fit_resample(df, y)
    assert all(isinstance(dt, pd.SparseDtype) for dt in X_res.dtypes)
    np.testing.assert_array_equal(X_res.to_numpy(), X_ref)


def test_column_and_one_hot_targets() -> None:
    X, y = _data()
    y3 = np.array([0] * 35 + [1] * 15 + [2] * 20)
    X_ref, y_ref = SMOTE(random_state=0).fit_resample(X, y3)
    X_col, y_col = SMOTE(random_state=0).fit_resample(X, y3.reshape(-1, 1))
    assert y_col.shape == y_ref.shape  # a column comes back 1-D, as imbalanced-learn returns it
    np.testing.assert_array_equal(X_col, X_ref)
    onehot = np.eye(3, dtype=np.int32)[y3]
    X_oh, y_oh = SMOTE(random_state=0).fit_resample(X, onehot)
    np.testing.assert_array_equal(X_oh, X_ref)
    assert y_oh.dtype == np.int32 and y_oh.shape == (len(y_ref), 3)
    np.testing.assert_array_equal(y_oh.argmax(1), y_ref)
    # two classes: still one column per class (imbalanced-learn's label_binarize would give one)
    _, y2 = SMOTE(random_state=0).fit_resample(X, np.eye(2)[y])
    assert y2.shape == (100, 2) and (y2.sum(1) == 1).all()
    frame = pd.DataFrame(np.eye(3, dtype=np.int64)[y3], columns=["x", "y", "z"])
    _, y_frame = SMOTE(random_state=0).fit_resample(X, frame)
    assert y_frame.columns.tolist() == ["x", "y", "z"]
    np.testing.assert_array_equal(y_frame.to_numpy().argmax(1), y_ref)


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (np.linspace(0, 1, 70), "SMOTE: Unknown label type: continuous"),
        (np.r_[np.zeros(69), np.nan], "SMOTE: Unknown label type: continuous"),
        (np.ones((70, 3), dtype=int), "Multilabel and multioutput targets are not supported"),
        (np.full((70, 2), 2), "multilabel or multioutput target"),
        (np.array([["a", "b"]] * 70), "multilabel or multioutput target"),
    ],
)
def test_target_errors(y: np.ndarray, match: str) -> None:
    X, _ = _data()
    with pytest.raises(ValueError, match=match):
        SMOTE(random_state=0).fit_resample(X, y)


def test_whole_number_float_labels_accepted() -> None:
    X, y = _data()
    X_f, y_f = SMOTE(random_state=0).fit_resample(X, y.astype(np.float64))
    X_i, y_i = SMOTE(random_state=0).fit_resample(X, y)
    np.testing.assert_array_equal(X_f, X_i)
    assert y_f.dtype == np.float64 and (y_f == y_i).all()


def test_smotenc_strings_and_column_names() -> None:
    rng = np.random.default_rng(0)
    n = 60
    df = pd.DataFrame(
        {
            "x": rng.standard_normal(n),
            "color": rng.choice(["red", "green", "blue"], n),
            "size": pd.Categorical(rng.choice(["S", "M"], n)),
            "w": rng.standard_normal(n).astype(np.float32),
        }
    )
    y = pd.Series(["no"] * 45 + ["yes"] * 15, name="t")
    sampler = SMOTENC(["color", "size"], k_neighbors=3, random_state=0)
    X_res, y_res = sampler.fit_resample(df, y)
    assert sampler.categorical_features_.tolist() == [1, 2]
    assert X_res.columns.tolist() == ["x", "color", "size", "w"]
    assert X_res.dtypes["w"] == np.float32 and isinstance(X_res.dtypes["size"], pd.CategoricalDtype)
    assert set(X_res["color"]) <= {"red", "green", "blue"}
    assert y_res.value_counts().to_dict() == {"no": 45, "yes": 45}
    # the same as coding the categories by hand (sorted codes) on a float array
    codes = np.column_stack(
        [
            df["x"],
            np.unique(df["color"], return_inverse=True)[1],
            np.unique(df["size"].astype(str), return_inverse=True)[1],
            df["w"].astype(np.float64),
        ]
    )
    X_codes, _ = SMOTENC([1, 2], k_neighbors=3, random_state=0).fit_resample(codes, y.to_numpy())
    np.testing.assert_allclose(X_res["x"].to_numpy(), X_codes[:, 0])
    colors = np.unique(df["color"])
    assert X_res["color"].tolist() == colors[X_codes[:, 1].astype(int)].tolist()
    # a plain object array comes back as an object array
    X_obj, _ = SMOTENC([1, 2], k_neighbors=3, random_state=0).fit_resample(
        df.to_numpy(dtype=object), y.to_numpy()
    )
    assert X_obj.dtype == object and X_obj.shape == (90, 4)


def test_smotenc_string_errors() -> None:
    X, y = _data()
    with pytest.raises(TypeError, match="categorical_features given as column names"):
        SMOTENC(["d"]).fit_resample(X, y)
    with pytest.raises(ValueError, match=r"names columns \['z'\] that X does not have"):
        SMOTENC(["z"]).fit_resample(pd.DataFrame(X, columns=list("abcd")), y)
    mixed = X.astype(object)
    mixed[0, 0] = "oops"
    with pytest.raises(TypeError, match=r"SMOTENC: the continuous columns \[0, 1, 2\] must hold"):
        SMOTENC([3]).fit_resample(mixed, y)
    with pytest.raises(TypeError, match="SMOTE: X must hold floating-point values"):
        SMOTE().fit_resample(mixed, y)
