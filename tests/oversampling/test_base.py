"""The samplers as scikit-learn / imbalanced-learn estimators (``posneg.oversampling._base``).

imbalanced-learn's own common checks (``imblearn.utils.estimator_checks``, the generator its test
suite runs over its own samplers) are run here over posneg's SMOTE, BorderlineSMOTE, ADASYN and
SMOTENC, with the constructor arguments imbalanced-learn's suite uses for its own
(``random_state=42``; ``categorical_features=[0]`` for SMOTENC).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import torch

from posneg.oversampling import ADASYN, SMOTE, SMOTENC, BorderlineSMOTE

checks_mod = pytest.importorskip("imblearn.utils.estimator_checks")
imb = pytest.importorskip("imblearn.over_sampling")
sk_base = pytest.importorskip("sklearn.base")

if not hasattr(checks_mod, "estimator_checks_generator"):  # imbalanced-learn < 0.14
    pytest.skip("imbalanced-learn too old for estimator_checks_generator", allow_module_level=True)


def _ours() -> list[Any]:
    return [
        SMOTE(random_state=42),
        BorderlineSMOTE(random_state=42),
        ADASYN(random_state=42),
        SMOTENC(categorical_features=[0], random_state=42),
    ]


def _theirs(name: str) -> Any:
    if name == "SMOTENC":
        return imb.SMOTENC(categorical_features=[0], random_state=42)
    return getattr(imb, name)(random_state=42)


def _check_name(check: Any) -> str:
    return getattr(check, "func", check).__name__


#: Checks that cannot pass, and why (imbalanced-learn's own SMOTENC fails the same check, and
#: its test suite skips SMOTENC altogether).
_CANNOT = {
    ("SMOTENC", "check_samplers_string"): (
        "the check passes one all-categorical string column with categorical_features=[0]; "
        "SMOTE-NC needs a continuous column (imbalanced-learn's SMOTENC raises the same "
        "ValueError; SMOTEN is its sampler for purely categorical data)"
    ),
}


def _cases() -> list[Any]:
    out = []
    for est in _ours():
        name = type(est).__name__
        for _, check in checks_mod.estimator_checks_generator(est):
            key = (name, _check_name(check))
            marks = [pytest.mark.xfail(reason=_CANNOT[key], strict=True)] if key in _CANNOT else []
            out.append(pytest.param(est, check, id=f"{name}-{key[1]}", marks=marks))
    return out


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(("estimator", "check"), _cases())
def test_imblearn_common_checks(estimator: Any, check: Any) -> None:
    check(sk_base.clone(estimator))


@pytest.mark.parametrize("name", ["SMOTE", "BorderlineSMOTE", "ADASYN", "SMOTENC"])
def test_every_check_imblearn_applies_to_its_own_sampler_is_run(name: str) -> None:
    """Our tags yield at least the checks imbalanced-learn yields for its own sampler."""
    ours = next(e for e in _ours() if type(e).__name__ == name)
    theirs = {_check_name(c) for _, c in checks_mod.estimator_checks_generator(_theirs(name))}
    mine = {_check_name(c) for _, c in checks_mod.estimator_checks_generator(ours)}
    assert len(theirs) == 15
    assert theirs <= mine


def test_tags() -> None:
    from sklearn.utils import get_tags

    for est in _ours():
        tags = get_tags(est)
        assert tags.estimator_type == "sampler"
        assert tags.input_tags.sparse and tags.input_tags.dataframe
        assert not tags.input_tags.allow_nan
        assert tags.target_tags.required
        assert tags.sampler_tags.sample_indices is False
        assert tags.input_tags.string is isinstance(est, SMOTENC)


def test_import_needs_no_pandas_scipy_sklearn() -> None:
    code = (
        "import sys, posneg.oversampling\n"
        "print(sorted(m for m in ('pandas', 'scipy', 'sklearn', 'imblearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# random_state ----------------------------------------------------------------------------------


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.standard_normal((60, 3)), rng.standard_normal((20, 3)) + 1.0])
    return X, np.array([0] * 60 + [1] * 20)


@pytest.mark.parametrize("cls", [SMOTE, BorderlineSMOTE, ADASYN])
def test_int_random_state_is_a_fresh_generator_per_fit(cls: Any) -> None:
    X, y = _data()
    sampler = cls(random_state=7)
    a, _ = sampler.fit_resample(X, y)
    b, _ = sampler.fit_resample(X, y)
    np.testing.assert_array_equal(a, b)
    c, _ = cls().fit_resample(X, y, generator=torch.Generator().manual_seed(7))
    np.testing.assert_array_equal(a, c)  # random_state=s is generator=manual_seed(s)
    d, _ = cls(random_state=np.int64(7)).fit_resample(X, y)
    np.testing.assert_array_equal(a, d)


def test_stateful_random_states_advance_and_reproduce() -> None:
    X, y = _data()
    for make in (
        lambda: np.random.default_rng(3),
        lambda: np.random.RandomState(3),
        lambda: torch.Generator().manual_seed(3),
    ):
        sampler = SMOTE(random_state=make())
        first, _ = sampler.fit_resample(X, y)
        second, _ = sampler.fit_resample(X, y)
        assert not np.array_equal(first, second)  # the generator moves on, as in scikit-learn
        again = SMOTE(random_state=make())
        np.testing.assert_array_equal(again.fit_resample(X, y)[0], first)
        np.testing.assert_array_equal(again.fit_resample(X, y)[0], second)


def test_torch_generator_random_state_is_used_as_is() -> None:
    X, y = _data()
    a, _ = SMOTE(random_state=torch.Generator().manual_seed(5)).fit_resample(X, y)
    b, _ = SMOTE().fit_resample(X, y, generator=torch.Generator().manual_seed(5))
    np.testing.assert_array_equal(a, b)


def test_generator_argument_overrides_random_state() -> None:
    X, y = _data()
    a, _ = SMOTE(random_state=1).fit_resample(X, y, generator=torch.Generator().manual_seed(2))
    b, _ = SMOTE(random_state=2).fit_resample(X, y)
    np.testing.assert_array_equal(a, b)


def test_no_random_state_uses_torch_global_rng() -> None:
    X, y = _data()
    torch.manual_seed(11)
    a, _ = SMOTE().fit_resample(X, y)
    torch.manual_seed(11)
    b, _ = SMOTE().fit_resample(X, y)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("value", "err", "match"),
    [
        (True, TypeError, "random_state must be None, an int seed"),
        ("42", TypeError, "random_state must be .*; got str"),
        (1.5, TypeError, "random_state must be .*; got float"),
        (-1, ValueError, r"random_state must be in \[0, 2\*\*64\)"),
    ],
)
def test_random_state_errors(value: Any, err: type, match: str) -> None:
    X, y = _data()
    sampler = SMOTE(random_state=value)  # stored, checked at fit
    with pytest.raises(err, match=f"SMOTE: {match}"):
        sampler.fit_resample(X, y)


def test_random_state_tensor_input_cpu() -> None:
    X, y = _data()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    a, _ = SMOTE(random_state=4).fit_resample(Xt, yt)
    b, _ = SMOTE().fit_resample(Xt, yt, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)


# constructor stores, fit validates; clone ---------------------------------------------------------


@pytest.mark.parametrize(
    "random_state", [None, 3, np.random.default_rng(0), torch.Generator().manual_seed(0)]
)
def test_clone_and_get_params_keep_objects(random_state: Any) -> None:
    for est in (
        SMOTE(k_neighbors=np.int64(3), random_state=random_state),
        SMOTENC([0], random_state=random_state),
    ):
        params = est.get_params()
        assert params["random_state"] is random_state
        twin = sk_base.clone(est)
        assert type(twin) is type(est) and set(twin.get_params()) == set(params)


def test_k_neighbors_numpy_int_accepted_bool_rejected() -> None:
    X, y = _data()
    X_a, _ = SMOTE(k_neighbors=np.int64(3), random_state=0).fit_resample(X, y)
    X_b, _ = SMOTE(k_neighbors=3, random_state=0).fit_resample(X, y)
    np.testing.assert_array_equal(X_a, X_b)
    for cls, name in ((SMOTE, "k_neighbors"), (ADASYN, "n_neighbors")):
        with pytest.raises(TypeError, match=f"{name} must be an int; got bool"):
            cls(**{name: True}).fit_resample(X, y)
    with pytest.raises(TypeError, match="m_neighbors must be an int; got bool"):
        BorderlineSMOTE(m_neighbors=np.bool_(True)).fit_resample(X, y)


def test_set_params_stores_and_fit_reports() -> None:
    sampler = SMOTE().set_params(k_neighbors=0, random_state=1)
    assert sampler.k_neighbors == 0 and sampler.random_state == 1
    X, y = _data()
    with pytest.raises(ValueError, match="SMOTE: k_neighbors must be >= 1; got 0"):
        sampler.fit_resample(X, y)
    sampler.set_params(k_neighbors=3)
    assert sampler.fit_resample(X, y)[0].shape == (120, 3)
    with pytest.raises(ValueError, match=r"SMOTE: unknown parameters \['bogus'\]"):
        sampler.set_params(bogus=1)


# feature names ----------------------------------------------------------------------------------


def test_get_feature_names_out_without_names() -> None:
    X, y = _data()
    sampler = SMOTE(random_state=0)
    with pytest.raises(ValueError, match="not fitted yet"):
        sampler.get_feature_names_out()
    sampler.fit_resample(X, y)
    out = sampler.get_feature_names_out()
    assert out.dtype == object and out.tolist() == ["x0", "x1", "x2"]
    assert sampler.get_feature_names_out(["a", "b", "c"]).tolist() == ["a", "b", "c"]
    with pytest.raises(
        ValueError, match=r"input_features should have length equal .* \(3\), got 2"
    ):
        sampler.get_feature_names_out(["a", "b"])
    assert not hasattr(sampler, "feature_names_in_")


def test_feature_names_from_dataframe_and_forgotten_on_refit() -> None:
    pd = pytest.importorskip("pandas")
    X, y = _data()
    sampler = ADASYN(random_state=0)
    sampler.fit_resample(pd.DataFrame(X, columns=["a", "b", "c"]), y)
    assert sampler.feature_names_in_.tolist() == ["a", "b", "c"]
    assert sampler.get_feature_names_out().tolist() == ["a", "b", "c"]
    with pytest.raises(ValueError, match="input_features is not equal to feature_names_in_"):
        sampler.get_feature_names_out(["a", "b", "z"])
    assert "feature_names_in_" in sampler.state_dict()
    sampler.fit_resample(pd.DataFrame(X), y)  # integer column names: no feature names
    assert not hasattr(sampler, "feature_names_in_")
    assert sampler.get_feature_names_out().tolist() == ["x0", "x1", "x2"]


# gradients (issue 22: decided to keep the graph, documented) ------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: SMOTE(k_neighbors=3),
        lambda: BorderlineSMOTE(k_neighbors=3, m_neighbors=6, kind="borderline-2"),
        lambda: ADASYN(n_neighbors=3),
        lambda: SMOTENC([2], k_neighbors=3),
    ],
)
def test_output_keeps_the_graph_each_row_a_convex_combination(make: Any) -> None:
    """Every output row is ``(1 - w) x_i + w x_j`` with ``w`` in [0, 1], so the gradient of the
    sum of the outputs' continuous columns is, summed over input rows, the number of outputs."""
    g = torch.Generator().manual_seed(0)
    X = torch.cat([torch.randn(60, 3, generator=g), torch.randn(20, 3, generator=g) + 0.5])
    X[:, 2] = torch.randint(3, (80,), generator=g).double()
    X = X.double().requires_grad_(True)
    y = torch.tensor([0] * 60 + [1] * 20)
    X_res, _ = make().fit_resample(X, y, generator=torch.Generator().manual_seed(1))
    assert X_res.grad_fn is not None
    X_res[:, :2].sum().backward()
    assert X.grad is not None
    grad = X.grad[:, :2]
    torch.testing.assert_close(
        grad.sum(0), torch.full((2,), float(X_res.shape[0]), dtype=grad.dtype)
    )
    assert bool((grad >= 1 - 1e-12).all())  # each input row appears once unchanged, plus >= 0
    assert not X_res.detach().requires_grad
