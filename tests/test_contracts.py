"""One shared suite of contracts over every registered unit (``posneg.registry``).

Each technique in the registry whose module is present must have an entry in ``CONTRACTS`` (here,
or in a ``tests/contracts/contracts_<family>.py`` file of its own, built from ``contract_kit``): a
factory that builds the unit with non-default hyperparameters, a factory that builds small inputs
from a local generator, and the call that runs it. A unit present in the registry without an entry
fails :func:`test_every_available_unit_has_a_contract`, so no unit ships without these checks.

The checks (``CHECKS``):

- ``determinism``: the same inputs (and, for units that draw, the same generator seed) give
  bit-identical outputs; for drawing units another seed gives another output.
- ``rng``: the global torch RNG is untouched by a call (drawing units are given a generator).
- ``grad``: ``torch.autograd.gradcheck`` in float64 on small inputs (B=4, D=3); inputs of more
  than 48 entries (image batches) use gradcheck's fast mode (random Jacobian projections).
- ``grad_flow``: backward through the unit as built by ``make`` gives finite gradients, not all
  zero, to every differentiated input (float32).
- ``dtype``: float32 in -> float32 out, float64 in -> float64 out.
- ``half``: float16/bfloat16 inputs give finite outputs, of ``Contract.half_dtype`` (float32 for
  objectives, which reduce in float32).
- ``cuda``: the CUDA result agrees with the CPU result (marked ``cuda``; skipped without a GPU).
  Units that draw are only required to be deterministic on CUDA and to keep outputs on the input's
  device, since CPU and CUDA generators produce different streams.
- ``pickle``: ``pickle.loads(pickle.dumps(unit))`` gives identical outputs, before and after the
  unit has been used (state included).
- ``repr``: ``repr(unit)`` shows the hyperparameters it was built with.

Besides, every present unit loads with a ``CITATION``, and a unit whose entry point (``forward``,
``fit``, ``fit_resample``; a sampler's constructor) takes ``generator=`` is declared as drawing.

A unit whose nature makes a check meaningless lists it in ``Contract.not_applicable`` with the
reason (for example, a memory queue stores detached keys, so ``grad`` does not apply); those
pairs are not generated. No expected value here is a number pinned from a seeded RNG: every check
compares the unit with itself (another call, another device, a pickled copy) or with a property.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Sampler

from contract_kit import (
    B,
    Contract,
    D,
    Inputs,
)
from contract_kit import (
    call_module as _call_module,
)
from contract_kit import (
    cls as _cls,
)
from contract_kit import (
    loss as _loss,
)
from contract_kit import (
    pair as _pair,
)
from contract_kit import (
    randn as _randn,
)
from contract_kit import (
    views as _views,
)
from posneg import registry

CHECKS = ("determinism", "rng", "grad", "grad_flow", "dtype", "half", "cuda", "pickle", "repr")
HALF_DTYPES = (torch.float16, torch.bfloat16)


def _info_nce_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    q, k = _pair(dtype, device, g)
    return (q, k, _randn(g, 5, D, dtype=dtype, device=device))


def _amcl_make(dtype: torch.dtype, device: torch.device) -> nn.Module:
    init = torch.Generator().manual_seed(0)  # AMCLLoss draws its initial weights from it
    hyper = {"num_heads": 2, "hidden_dim": 8, "out_dim": 4, "reg_weight": 0.2}
    module: nn.Module = _cls("AMCLLoss")(5, generator=init, **hyper)
    # The module owns projection heads: its parameters follow float32/float64 inputs; half
    # inputs meet float32 parameters.
    return module.to(device=device, dtype=dtype if dtype == torch.float64 else torch.float32)


def _amcl_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (
        _randn(g, B, 5, dtype=dtype, device=device),
        _randn(g, B, 5, dtype=dtype, device=device),
    )


def _supcon_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    y = torch.tensor([0, 1, 0, 2], device=device)  # every anchor of cat([y, y]) has a positive
    return (_randn(g, 2 * B, D, dtype=dtype, device=device), torch.cat([y, y]))


def _queue_make(dtype: torch.dtype, device: torch.device) -> Any:
    return _cls("MemoryQueue")(6, D, dtype=dtype, device=device)


def _queue_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (
        _randn(g, 4, D, dtype=dtype, device=device),
        _randn(g, 3, D, dtype=dtype, device=device),
    )


def _queue_call(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    unit.enqueue(inputs[0])
    unit.enqueue(inputs[1])  # wraps around the ring of capacity 6
    return unit.negatives()


def _moco_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    q, k = _pair(dtype, device, g)
    return (q, k, _randn(g, 8, D, dtype=dtype, device=device))  # queue of K = 8 negatives


def _tagging_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    """Token tagging: logits (2, 3, C=4) and class indices (2, 3) with one ignored token."""
    target = torch.tensor([[0, 1, 3], [2, 1, -100]], device=device)
    return (_randn(g, 2, 3, 4, dtype=dtype, device=device), target)


def _laso_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    """Multi-label features (8, 4) whose label sets (8, 3) are readable from them, and a pair of
    (3, 4) feature blocks to combine."""
    labels = torch.tensor(
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1], [1, 1, 1], [1, 0, 0]],
        dtype=torch.bool,
    )
    noise = 0.1 * torch.randn(8, 4, generator=g, dtype=torch.float64)
    feats = torch.cat([labels, labels[:, :1]], dim=1).double() + noise
    a = _randn(g, 3, 4, dtype=dtype, device=device)
    b = _randn(g, 3, 4, dtype=dtype, device=device)
    return (feats.to(dtype=dtype, device=device), labels.to(device), a, b)


def _laso_call(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    feats, labels, a, b = inputs
    unit.fit(feats, labels, epochs=1, generator=generator)
    union = unit.synthesise(a, b, "union")
    new_x, new_y = unit.augment(feats, labels, 4, generator=generator)
    return (union, new_x, new_y)


def _laso_grad_call(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    feats, labels, a, b = inputs
    if unit.classifier_ is None:  # fit once; gradcheck then repeats only the fitted maps
        unit.fit(feats, labels, epochs=1, generator=generator)
    return tuple(unit.synthesise(a, b, op) for op in ("intersection", "union", "subtraction"))


def _image_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    """A (4, 3, 8, 8) image batch in [0, 1] (augmentation units)."""
    return (
        torch.rand(4, 3, 8, 8, generator=g, dtype=torch.float64).to(dtype=dtype, device=device),
    )


def _tabular_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    """(21, 3) rows of three classes (12 / 5 / 4); column 2 holds categories 0, 1, 2."""
    X = _randn(g, 21, 3, dtype=torch.float64, device=torch.device("cpu"))
    X[:, 2] = torch.randint(0, 3, (21,), generator=g).to(torch.float64)
    X[12:, :2] += 1.5  # the small classes sit apart, with some overlap (borderline cases)
    y = torch.tensor([0] * 12 + [1] * 5 + [2] * 4, device=device)
    return (X.to(dtype=dtype, device=device), y)


def _call_fit_resample(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    return unit.fit_resample(*inputs, generator=generator)


def _sampler_make(dtype: torch.dtype, device: torch.device) -> Any:
    labels = torch.tensor([0] * 20 + [1] * 5 + [2] * 3)
    return _cls("BalancedBatchSampler")(labels, 6, target={0: 1.0, 1: 1.0, 2: 2.0}, num_batches=5)


def _sampler_call(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    unit.generator = generator  # the sampler's documented source of draws for each epoch
    return torch.tensor(list(unit))


_NO_AUTOGRAD = (
    "a resampler (scikit-learn's fit_resample contract): discrete neighbour search, "
    "no autograd contract"
)


def _call_drawing_module(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    return unit(*inputs, generator=generator)


def _mixing(name: str, **hyper: Any) -> Callable[[torch.dtype, torch.device], nn.Module]:
    """``make`` for a stateless batch-mixing module (no parameters; buffers follow ``device``)."""

    def make(dtype: torch.dtype, device: torch.device) -> nn.Module:
        module: nn.Module = _cls(name)(**hyper)
        return module.to(device)

    return make


def _mix_images(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    """A batch of B=4 images (4, 2, 6, 6) with class ids in [0, 3)."""
    return (
        _randn(g, B, 2, 6, 6, dtype=dtype, device=device),
        torch.tensor([0, 1, 2, 1], device=device),
    )


def _maa_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    """Anchor and partner features, virtual concepts (B, D), 5 seen-pair concepts and lam."""
    feats = [_randn(g, n, D, dtype=dtype, device=device) for n in (B, B, B, 5)]
    return (*feats, 0.3)


def _cot_sampler_make(dtype: torch.dtype, device: torch.device) -> Any:
    """12 training items: two objects, long-tailed attributes, one single-attribute object."""
    attrs = torch.tensor([0, 0, 0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    objs = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    return _cls("MinorityPartnerSampler")(attrs, objs, 4, drop_last=True)


def _mix_features(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    """Features (4, D) with imbalanced class ids (MinorityMix mixes whatever tensor it gets)."""
    return (_randn(g, B, D, dtype=dtype, device=device), torch.tensor([0, 0, 1, 2], device=device))


# --- mining: retrieval training strategies (issue 4) ------------------------------------------


def _star_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    """Queries, their positives (B, D), three hard negatives (3, D) and both relevance masks."""
    relevant = torch.zeros(B, B, dtype=torch.bool, device=device)
    relevant[0, 1] = True  # query 0 shares a relevant document with query 1
    hard_relevant = torch.zeros(B, 3, dtype=torch.bool, device=device)
    hard_relevant[2, 0] = True
    return (
        _randn(g, B, D, dtype=dtype, device=device),
        _randn(g, B, D, dtype=dtype, device=device),
        _randn(g, 3, D, dtype=dtype, device=device),
        relevant,
        hard_relevant,
    )


def _adore_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    """Candidate scores (B, 5), relevance (B, 5) and 1-based ranks with one padded entry."""
    relevant = torch.zeros(B, 5, dtype=torch.bool, device=device)
    relevant[torch.arange(B), torch.tensor([0, 2, 4, 1])] = True
    ranks = torch.arange(1, 6, device=device).repeat(B, 1)
    ranks[1, 4] = -1  # padding (a list shorter than the others)
    return (_randn(g, B, 5, dtype=dtype, device=device), relevant, ranks)


def _rand_neg_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    """Queries, their positives (B, D), five random documents (5, D) and their relevance mask."""
    rand_relevant = torch.zeros(B, 5, dtype=torch.bool, device=device)
    rand_relevant[1, 3] = True  # a random document that is relevant to query 1
    return (
        _randn(g, B, D, dtype=dtype, device=device),
        _randn(g, B, D, dtype=dtype, device=device),
        _randn(g, 5, D, dtype=dtype, device=device),
        rand_relevant,
    )


def _ngame_sampler_make(dtype: torch.dtype, device: torch.device) -> Any:
    """16 items clustered into 8 balanced clusters of 2 from fixed embeddings (own generators)."""
    sampler = _cls("NGAMESampler")(16, 4, max_iter=5)
    emb = torch.randn(16, D, generator=torch.Generator().manual_seed(5))
    sampler.refresh(emb, 2, generator=torch.Generator().manual_seed(6))
    return sampler


_INDEX_BATCHES = "yields integer index batches: nothing to differentiate"
_INDEX_DTYPE = "yields integer index batches: no floating input or output"


CONTRACTS: dict[str, Contract] = {
    # --- contrastive objectives -----------------------------------------------------------
    "InfoNCELoss": Contract(
        make=_loss("InfoNCELoss", temperature=0.2, symmetric=True),
        inputs=_info_nce_inputs,
        call=_call_module,
        repr_has=("temperature=0.2", "symmetric=True"),
        grad_args=(0, 1, 2),
    ),
    "NTXentLoss": Contract(
        make=_loss("NTXentLoss", temperature=0.3),
        inputs=_pair,
        call=_call_module,
        repr_has=("temperature=0.3",),
        grad_args=(0, 1),
    ),
    "DCLLoss": Contract(
        make=_loss("DCLLoss", temperature=0.2),
        inputs=_pair,
        call=_call_module,
        repr_has=("temperature=0.2",),
        grad_args=(0, 1),
    ),
    "DCLWLoss": Contract(
        make=_loss("DCLWLoss", temperature=0.2, sigma=0.7),
        inputs=_pair,
        call=_call_module,
        repr_has=("temperature=0.2", "sigma=0.7"),
        grad_args=(0, 1),
    ),
    "HCLLoss": Contract(
        make=_loss("HCLLoss", temperature=0.3, beta=0.5, tau_plus=0.05),
        inputs=_pair,
        call=_call_module,
        repr_has=("temperature=0.3", "beta=0.5", "tau_plus=0.05"),
        grad_args=(0, 1),
    ),
    "CrossModalHCLLoss": Contract(
        make=_loss("CrossModalHCLLoss", temperature=0.2, beta=0.5, tau_plus=0.05),
        inputs=_pair,
        call=_call_module,
        repr_has=("temperature=0.2", "beta=0.5", "tau_plus=0.05"),
        grad_args=(0, 1),
    ),
    "CACRLoss": Contract(
        make=_loss("CACRLoss", alpha=0.5, beta=2.0, t_pos=0.8, t_neg=0.7),
        inputs=_views(3),
        call=_call_module,
        repr_has=("alpha=0.5", "beta=2.0", "t_pos=0.8", "t_neg=0.7"),
        grad_args=(0,),
    ),
    "AMCLLoss": Contract(
        make=_amcl_make,
        inputs=_amcl_inputs,
        call=_call_module,
        repr_has=("num_heads=2", "hidden_dim=8", "out_dim=4", "reg_weight=0.2"),
        grad_args=(0, 1),
    ),
    "SupConLoss": Contract(
        make=_loss("SupConLoss", temperature=0.2),
        inputs=_supcon_inputs,
        call=_call_module,
        repr_has=("temperature=0.2",),
        grad_args=(0,),
    ),
    # --- negatives in embedding space -------------------------------------------------------
    "MemoryQueue": Contract(
        make=_queue_make,
        inputs=_queue_inputs,
        call=_queue_call,
        repr_has=("capacity=6", f"dim={D}"),
        half_dtype=None,
        not_applicable={
            "grad": "stores detached keys: no gradient flows into a queue (MoCo)",
            "grad_flow": "stores detached keys: no gradient flows into a queue (MoCo)",
        },
    ),
    "MoCHi": Contract(
        make=_loss("MoCHi", num_hard=4, num_mix=3, num_query_mix=2, temperature=0.3),
        inputs=_moco_inputs,
        call=_call_drawing_module,
        repr_has=("num_hard=4", "num_mix=3", "num_query_mix=2", "temperature=0.3"),
        draws=True,
        grad_args=(0, 1),
        # The synthetic negatives are detached (the reference code's choice): type-2 mixes
        # contain the query and type-1 mixes the queue, so the analytic gradient deliberately
        # omits those paths. gradcheck therefore runs with type-1 mixes only (s' = 0) and
        # differentiates query and key; the queue gets no gradient through the mixes.
        grad_make=_loss("MoCHi", num_hard=4, num_mix=3, num_query_mix=0, temperature=0.3),
    ),
    "FeatureTransform": Contract(
        make=_loss(
            "FeatureTransform", pos_alpha=1.5, neg_alpha=1.2, dim_mask="both", temperature=0.3
        ),
        inputs=_moco_inputs,
        call=_call_drawing_module,
        repr_has=("pos_alpha=1.5", "neg_alpha=1.2", "dim_mask='both'", "temperature=0.3"),
        draws=True,
        grad_args=(0,),  # key and queue are detached, as in the official code (documented)
    ),
    # --- oversampling ------------------------------------------------------------------------
    "LaSO": Contract(
        make=lambda dtype, device: _cls("LaSO")(
            n_layers=1, batch_size=4, classifier_epochs=2, pairs="random", recon_weight=0.5
        ),
        inputs=_laso_inputs,
        call=_laso_call,
        repr_has=(
            "n_layers=1",
            "batch_size=4",
            "classifier_epochs=2",
            "pairs='random'",
            "recon_weight=0.5",
        ),
        draws=True,
        # gradients of the synthesised features with respect to the pair (a, b) they combine;
        # fitting itself is training, not a differentiable contract.
        grad_args=(2, 3),
        grad_call=_laso_grad_call,
    ),
    "SMOTE": Contract(
        make=lambda dtype, device: _cls("SMOTE")(k_neighbors=3, sampling_strategy="not majority"),
        inputs=_tabular_inputs,
        call=_call_fit_resample,
        repr_has=("k_neighbors=3", "sampling_strategy='not majority'"),
        draws=True,
        half_dtype=None,  # data, not a loss: X's dtype is kept
        not_applicable={"grad": _NO_AUTOGRAD, "grad_flow": _NO_AUTOGRAD},
    ),
    "BorderlineSMOTE": Contract(
        make=lambda dtype, device: _cls("BorderlineSMOTE")(
            k_neighbors=2, m_neighbors=4, kind="borderline-2"
        ),
        inputs=_tabular_inputs,
        call=_call_fit_resample,
        repr_has=("k_neighbors=2", "m_neighbors=4", "kind='borderline-2'"),
        draws=True,
        half_dtype=None,  # data, not a loss: X's dtype is kept
        not_applicable={"grad": _NO_AUTOGRAD, "grad_flow": _NO_AUTOGRAD},
    ),
    "ADASYN": Contract(
        make=lambda dtype, device: _cls("ADASYN")(n_neighbors=3),
        inputs=_tabular_inputs,
        call=_call_fit_resample,
        repr_has=("n_neighbors=3",),
        draws=True,
        half_dtype=None,  # data, not a loss: X's dtype is kept
        not_applicable={"grad": _NO_AUTOGRAD, "grad_flow": _NO_AUTOGRAD},
    ),
    "SMOTENC": Contract(
        make=lambda dtype, device: _cls("SMOTENC")([2], k_neighbors=3),
        inputs=_tabular_inputs,
        call=_call_fit_resample,
        repr_has=("categorical_features=[2]", "k_neighbors=3"),
        draws=True,
        half_dtype=None,  # data, not a loss: X's dtype is kept
        not_applicable={"grad": _NO_AUTOGRAD, "grad_flow": _NO_AUTOGRAD},
    ),
    "BalancedBatchSampler": Contract(
        make=_sampler_make,
        inputs=lambda dtype, device, g: (),
        call=_sampler_call,
        repr_has=("batch_size=6", "num_batches=5", "target={0: 1.0, 1: 1.0, 2: 2.0}"),
        draws=True,
        not_applicable={
            "grad": "yields integer index batches: nothing to differentiate",
            "grad_flow": "yields integer index batches: nothing to differentiate",
            "dtype": "yields integer index batches: no floating input or output",
            "half": "yields integer index batches: no floating input or output",
            "cuda": "a DataLoader batch sampler: draws on the host with a CPU generator",
        },
    ),
    # --- imbalance losses -------------------------------------------------------------------
    "DiceLoss": Contract(
        make=_loss("DiceLoss", alpha=0.5, gamma=0.8, square_denominator=True, ignore_index=-100),
        inputs=_tagging_inputs,
        call=_call_module,
        repr_has=("alpha=0.5", "gamma=0.8", "square_denominator=True", "ignore_index=-100"),
        grad_args=(0,),
    ),
    "FocalLoss": Contract(
        make=_loss("FocalLoss", gamma=1.5, alpha=[0.2, 0.3, 0.5, 1.0], ignore_index=-100),
        inputs=_tagging_inputs,
        call=_call_module,
        repr_has=("gamma=1.5", "alpha=[0.2, 0.3, 0.5, 1.0]", "ignore_index=-100"),
        grad_args=(0,),
    ),
    # --- batch mixing (outputs keep the input's dtype: mixed x and soft targets alike) ------
    "MixUp": Contract(
        make=_mixing("MixUp", alpha=0.4, per_sample=True, num_classes=3, label_smoothing=0.1),
        inputs=_mix_images,
        call=_call_drawing_module,
        repr_has=("alpha=0.4", "per_sample=True", "num_classes=3", "label_smoothing=0.1"),
        draws=True,
        grad_args=(0,),
        half_dtype=None,
    ),
    "CutMix": Contract(
        make=_mixing("CutMix", alpha=0.5, per_sample=True, num_classes=3, label_smoothing=0.1),
        inputs=_mix_images,
        call=_call_drawing_module,
        repr_has=("alpha=0.5", "per_sample=True", "num_classes=3", "label_smoothing=0.1"),
        draws=True,
        grad_args=(0,),
        half_dtype=None,
    ),
    "FMix": Contract(
        make=_mixing(
            "FMix", alpha=0.5, decay_power=2.0, max_soft=0.1, per_sample=True, num_classes=3
        ),
        inputs=_mix_images,
        call=_call_drawing_module,
        repr_has=("alpha=0.5", "decay_power=2.0", "max_soft=0.1", "per_sample=True"),
        draws=True,
        grad_args=(0,),
        half_dtype=None,
    ),
    "ResizeMix": Contract(
        make=_mixing("ResizeMix", scale=(0.3, 0.9), per_sample=True, num_classes=3),
        inputs=_mix_images,
        call=_call_drawing_module,
        repr_has=("scale=(0.3, 0.9)", "per_sample=True", "num_classes=3"),
        draws=True,
        grad_args=(0,),
        half_dtype=None,
    ),
    "MinorityPartnerSampler": Contract(
        make=_cot_sampler_make,
        inputs=lambda dtype, device, g: (),
        call=_sampler_call,
        repr_has=("num_items=12", "batch_size=4", "drop_last=True"),
        draws=True,
        not_applicable={
            "grad": "yields integer index batches: nothing to differentiate",
            "grad_flow": "yields integer index batches: nothing to differentiate",
            "dtype": "yields integer index batches: no floating input or output",
            "half": "yields integer index batches: no floating input or output",
            "cuda": "a DataLoader batch sampler: draws on the host with a CPU generator",
        },
    ),
    "MAALoss": Contract(
        make=_loss("MAALoss", temperature=0.2, reduction="sum"),
        inputs=_maa_inputs,
        call=_call_module,
        repr_has=("temperature=0.2", "reduction='sum'"),
        grad_args=(0, 1, 2, 3),
    ),
    "MinorityMix": Contract(
        make=_mixing("MinorityMix", num_classes=3, alpha=0.5, temperature=2.0, per_sample=True),
        inputs=_mix_features,
        call=_call_drawing_module,
        repr_has=("num_classes=3", "alpha=0.5", "temperature=2.0", "per_sample=True"),
        draws=True,
        grad_args=(0,),
        half_dtype=None,
    ),
    # --- augmentation ---------------------------------------------------------------------
    "RandAugment": Contract(
        make=lambda dtype, device: _cls("RandAugment")(num_ops=3, magnitude=17, fill=0.5),
        inputs=_image_inputs,
        call=_call_drawing_module,
        repr_has=("num_ops=3", "magnitude=17", "fill=0.5"),
        draws=True,
        half_dtype=None,  # augmentation keeps the input's dtype (AMP dtype kept)
        not_applicable={
            "grad": "image ops are piecewise constant in the input (posterize, equalize, "
            "nearest resampling); augmentation has no gradient contract",
            "grad_flow": "image ops are piecewise constant in the input (posterize, equalize, "
            "nearest resampling); augmentation has no gradient contract",
        },
    ),
    "Corruptions": Contract(
        make=lambda dtype, device: _cls("Corruptions")(
            "dermamnist",
            corruptions=["gaussian_noise", "defocus_blur", "contrast_down", "black_corner"],
        ),
        inputs=_image_inputs,
        call=_call_drawing_module,
        repr_has=(
            "corruptions=['gaussian_noise', 'defocus_blur', 'contrast_down', 'black_corner']",
        ),
        draws=True,
        half_dtype=None,  # augmentation keeps the input's dtype (AMP dtype kept)
        not_applicable={
            "grad": "corruptions include clipping, Poisson and salt-and-pepper draws; "
            "augmentation has no gradient contract",
            "grad_flow": "corruptions include clipping, Poisson and salt-and-pepper draws; "
            "augmentation has no gradient contract",
        },
    ),
    # bilinear warps and per-pixel blends are differentiable in x: gradcheck applies (the
    # generator is re-seeded at every call, so the fields are the same)
    "RandomField": Contract(
        make=lambda dtype, device: _cls("RandomField")(
            translation=1.5, rotation=4.0, scale=0.05, hue=0.05, length_scale=3.0, padding="border"
        ),
        inputs=_image_inputs,
        call=_call_drawing_module,
        repr_has=("translation=1.5", "rotation=4.0", "hue=0.05", "length_scale=3.0", "'border'"),
        draws=True,
        grad_args=(0,),
        half_dtype=None,  # augmentation keeps the input's dtype (AMP dtype kept)
    ),
    "Resample": Contract(
        make=lambda dtype, device: _cls("Resample")(
            mode="bilinear", scale=0.75, shift=1.5, per_pixel=True
        ),
        inputs=_image_inputs,
        call=_call_drawing_module,
        repr_has=("mode='bilinear'", "scale=0.75", "shift=1.5", "per_pixel=True"),
        draws=True,
        grad_args=(0,),
        half_dtype=None,  # augmentation keeps the input's dtype (AMP dtype kept)
    ),
    # --- mining: retrieval training strategies (issue 4) --------------------------------------
    "STARLoss": Contract(
        make=_loss("STARLoss", temperature=0.5, normalize=True),
        inputs=_star_inputs,
        call=_call_module,
        repr_has=("temperature=0.5", "normalize=True"),
        grad_args=(0, 1, 2),
    ),
    "RandNegLoss": Contract(
        make=_loss("RandNegLoss", temperature=0.5, normalize=True),
        inputs=_rand_neg_inputs,
        call=_call_module,
        repr_has=("temperature=0.5", "normalize=True"),
        grad_args=(0, 1, 2),
    ),
    "ADORELoss": Contract(
        make=_loss("ADORELoss", metric_cut=3, sigma=0.5),
        inputs=_adore_inputs,
        call=_call_module,
        repr_has=("metric_cut=3", "sigma=0.5"),
        grad_args=(0,),
    ),
    "TripletMarginOHNMLoss": Contract(
        make=_loss("TripletMarginOHNMLoss", k=2, margin=0.5, tau=0.2),
        inputs=_pair,
        call=_call_module,
        repr_has=("k=2", "margin=0.5", "tau=0.2"),
        grad_args=(0, 1),
    ),
    "NGAMESampler": Contract(
        make=_ngame_sampler_make,
        inputs=lambda dtype, device, g: (),
        call=_sampler_call,
        repr_has=("num_items=16", "batch_size=4", "cluster_size=2"),
        draws=True,
        not_applicable={
            "grad": _INDEX_BATCHES,
            "grad_flow": _INDEX_BATCHES,
            "dtype": _INDEX_DTYPE,
            "half": _INDEX_DTYPE,
            "cuda": "a DataLoader batch sampler: draws on the host with a CPU generator",
        },
    ),
}


def _family_contracts() -> dict[str, Contract]:
    """The ``CONTRACTS`` of every ``tests/contracts/contracts_*.py`` (one file per newer family)."""
    out: dict[str, Contract] = {}
    for path in sorted((Path(__file__).parent / "contracts").glob("contracts_*.py")):
        spec = importlib.util.spec_from_file_location(f"_posneg_{path.stem}", path)
        if spec is None or spec.loader is None:  # pragma: no cover - a file glob always loads
            raise RuntimeError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        clash = sorted(set(out) & set(module.CONTRACTS))
        if clash:
            raise RuntimeError(f"{path.name}: contracts {clash} are defined twice")
        out.update(module.CONTRACTS)
    return out


_clash = sorted(set(CONTRACTS) & set(_FAMILY := _family_contracts()))
if _clash:
    raise RuntimeError(f"contracts {_clash} are defined twice")
CONTRACTS.update(_FAMILY)

#: Registered techniques whose module is present in this installation.
AVAILABLE = {t.name: t for t in registry.available()}


def _params(check: str) -> list[str]:
    """Names of the contracts ``check`` applies to."""
    return [name for name in sorted(CONTRACTS) if check not in CONTRACTS[name].not_applicable]


# ---------------------------------------------------------------------------------------------
# output helpers
# ---------------------------------------------------------------------------------------------


def _tensors(out: Any) -> list[torch.Tensor]:
    """Every tensor in an output (tensor, ndarray, tuple, list, NamedTuple, dataclass, number)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, np.ndarray):
        return [torch.from_numpy(np.ascontiguousarray(out))]
    if isinstance(out, (bool, int, float)):
        return [torch.tensor(out)]
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        return [t for f in dataclasses.fields(out) for t in _tensors(getattr(out, f.name))]
    if isinstance(out, Mapping):
        return [t for k in sorted(out) for t in _tensors(out[k])]
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in _tensors(item)]
    raise TypeError(f"contract suite cannot read an output of type {type(out).__name__}")


def _floating(out: Any) -> list[torch.Tensor]:
    return [t for t in _tensors(out) if t.is_floating_point()]


def _assert_identical(a: Any, b: Any) -> None:
    ta, tb = _tensors(a), _tensors(b)
    assert len(ta) == len(tb)
    for x, y in zip(ta, tb, strict=True):
        assert x.shape == y.shape and x.dtype == y.dtype
        assert torch.equal(x, y), "outputs differ"


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _run(
    contract: Contract,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    seed: int = 0,
    unit: Any = None,
    inputs: Inputs | None = None,
) -> Any:
    """Build (unless given) the unit and inputs; call it (with a seeded generator if it draws)."""
    dev = torch.device(device)
    if unit is None:
        unit = contract.make(dtype, dev)
    if inputs is None:
        inputs = contract.inputs(dtype, dev, _generator(1234, torch.device("cpu")))
    gen = _generator(seed, dev) if contract.draws else None
    return contract.call(unit, inputs, gen)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """Inputs here are tiny: intra-op threads only add overhead (on a loaded 2-core machine,
    OpenMP parallel regions made a 4x3 loss call 100x slower). Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _require(name: str) -> Contract:
    if name not in AVAILABLE:
        pytest.skip(f"{name}: module not present in this installation")
    return CONTRACTS[name]


# ---------------------------------------------------------------------------------------------
# coverage of the registry
# ---------------------------------------------------------------------------------------------


def test_every_available_unit_has_a_contract() -> None:
    missing = sorted(set(AVAILABLE) - set(CONTRACTS))
    assert not missing, (
        f"registered techniques without a contract: {missing}; add an entry (make, inputs, call) "
        "to CONTRACTS in tests/test_contracts.py or in tests/contracts/contracts_<family>.py"
    )


def test_contract_table_names_registered_techniques() -> None:
    names = {t.name for t in registry.TECHNIQUES}
    stale = sorted(set(CONTRACTS) - names)
    assert not stale, f"contracts for names not in posneg.registry.TECHNIQUES: {stale}"


@pytest.mark.parametrize("name", sorted(AVAILABLE))
def test_registered_unit_loads_with_citation(name: str) -> None:
    technique = AVAILABLE[name]
    assert technique.load() is not None
    assert technique.citation().startswith("@")


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_not_applicable_checks_are_known_and_explained(name: str) -> None:
    for check, reason in CONTRACTS[name].not_applicable.items():
        assert check in CHECKS, f"{name}: unknown check {check!r}"
        assert len(reason) > 10, f"{name}: say why {check!r} does not apply"


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_drawing_units_declare_it(name: str) -> None:
    """A unit whose entry point takes ``generator=`` must be marked ``draws`` (and vice versa)."""
    contract = _require(name)
    unit = contract.make(torch.float32, torch.device("cpu"))
    entries = [getattr(unit, m) for m in ("forward", "fit", "fit_resample") if hasattr(unit, m)]
    if isinstance(unit, Sampler):  # a sampler draws in __iter__ from its constructor's generator
        entries = [type(unit)]
    takes_generator = any("generator" in inspect.signature(e).parameters for e in entries)
    assert takes_generator == contract.draws


# ---------------------------------------------------------------------------------------------
# the checks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _params("determinism"))
def test_determinism(name: str) -> None:
    contract = _require(name)
    _assert_identical(_run(contract, seed=0), _run(contract, seed=0))
    if contract.draws:
        a, b = _tensors(_run(contract, seed=0)), _tensors(_run(contract, seed=1))
        differs = len(a) != len(b) or any(
            x.shape != y.shape or not torch.equal(x, y) for x, y in zip(a, b, strict=True)
        )
        assert differs, "another seed gave the same output: is the generator used?"


@pytest.mark.parametrize("name", _params("rng"))
def test_global_rng_untouched(name: str) -> None:
    contract = _require(name)
    unit = contract.make(torch.float32, torch.device("cpu"))
    inputs = contract.inputs(
        torch.float32, torch.device("cpu"), _generator(1234, torch.device("cpu"))
    )
    before = torch.get_rng_state()
    _run(contract, unit=unit, inputs=inputs)
    assert torch.equal(before, torch.get_rng_state()), "the global RNG was used"


@pytest.mark.parametrize("name", _params("grad"))
def test_gradcheck_float64(name: str) -> None:
    contract = _require(name)
    cpu = torch.device("cpu")
    unit = (contract.grad_make or contract.make)(torch.float64, cpu)
    inputs = list(contract.inputs(torch.float64, cpu, _generator(1234, cpu)))
    assert contract.grad_args, f"{name}: no grad_args declared"
    leaves = tuple(inputs[i].detach().clone().requires_grad_(True) for i in contract.grad_args)

    def fn(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        args = list(inputs)
        for i, x in zip(contract.grad_args, xs, strict=True):
            args[i] = x
        gen = _generator(0, cpu) if contract.draws else None  # the same draws at every call
        call = contract.grad_call or contract.call
        outs = [t for t in _floating(call(unit, tuple(args), gen)) if t.requires_grad]
        assert outs, "no output carries a gradient"
        return tuple(outs)

    # Up to 48 input entries the full Jacobian is compared; beyond (image batches), gradcheck's
    # fast mode compares random projections of it, which keeps the check to a few calls.
    fast = sum(x.numel() for x in leaves) > 48
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=fast)


@pytest.mark.parametrize("name", _params("grad_flow"))
def test_gradients_flow(name: str) -> None:
    contract = _require(name)
    cpu = torch.device("cpu")
    unit = contract.make(torch.float32, cpu)
    inputs = list(contract.inputs(torch.float32, cpu, _generator(1234, cpu)))
    for i in contract.grad_args:
        inputs[i] = inputs[i].detach().clone().requires_grad_(True)
    out = _floating(_run(contract, unit=unit, inputs=tuple(inputs)))
    sum(t.sum() for t in out).backward()  # type: ignore[union-attr]
    for i in contract.grad_args:
        grad = inputs[i].grad
        assert grad is not None, f"no gradient reaches input {i}"
        assert bool(torch.isfinite(grad).all()) and bool(grad.abs().sum() > 0)


@pytest.mark.parametrize("name", _params("dtype"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_dtype_follows_input(name: str, dtype: torch.dtype) -> None:
    contract = _require(name)
    out = _floating(_run(contract, dtype=dtype))
    assert out, "no floating output"
    assert all(t.dtype == dtype for t in out), [t.dtype for t in out]
    assert all(t.device.type == "cpu" for t in _tensors(out))


@pytest.mark.parametrize("name", _params("half"))
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_half_inputs_finite(name: str, dtype: torch.dtype) -> None:
    contract = _require(name)
    out = _floating(_run(contract, dtype=dtype))
    assert out, "no floating output"
    expected = contract.half_dtype or dtype
    for t in out:
        assert t.dtype == expected, f"{t.dtype} != {expected}"
        assert bool(torch.isfinite(t).all())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", _params("cuda"))
def test_cuda_agrees_with_cpu(name: str) -> None:
    contract = _require(name)
    cuda = torch.device("cuda")
    out_cuda = _run(contract, device=cuda)
    assert all(t.device.type == "cuda" for t in _tensors(out_cuda))
    if contract.draws:
        # CPU and CUDA generators give different streams: same seed on CUDA, same result.
        _assert_identical(out_cuda, _run(contract, device=cuda))
        return
    out_cpu = _run(contract, device="cpu")
    for x, y in zip(_tensors(out_cpu), _tensors(out_cuda), strict=True):
        torch.testing.assert_close(y.cpu(), x, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", _params("pickle"))
def test_pickle_round_trip(name: str) -> None:
    contract = _require(name)
    cpu = torch.device("cpu")
    inputs = contract.inputs(torch.float32, cpu, _generator(1234, cpu))
    unit = contract.make(torch.float32, cpu)
    fresh_copy = pickle.loads(pickle.dumps(unit))
    assert type(fresh_copy) is type(unit)
    first = _run(contract, unit=unit, inputs=inputs)
    _assert_identical(first, _run(contract, unit=fresh_copy, inputs=inputs))
    # after use: state (a queue's contents, a fitted estimator) travels with the pickle
    used_copy = pickle.loads(pickle.dumps(unit))
    _assert_identical(
        _run(contract, unit=unit, inputs=inputs), _run(contract, unit=used_copy, inputs=inputs)
    )


@pytest.mark.parametrize("name", _params("repr"))
def test_repr_shows_hyperparameters(name: str) -> None:
    contract = _require(name)
    text = repr(contract.make(torch.float32, torch.device("cpu")))
    assert name in text, f"{name!r} not in {text!r}"
    for part in contract.repr_has:
        assert part in text, f"{part!r} not in {text!r}"
