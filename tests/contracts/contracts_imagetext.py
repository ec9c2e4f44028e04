"""Contract entries of DeGLA (``posneg.losses.degla``) and SPN4CIR's bank InfoNCE
(``posneg.losses.spn4cir``)."""

from __future__ import annotations

import torch

from contract_kit import B, Contract, D, Inputs, loss, randn

K = 2  # negatives per sample (DeGLA)
N_BANK = 7  # rows of the SPN4CIR target bank


def _degla_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (
        randn(g, B, D, dtype=dtype, device=device),  # image
        randn(g, B, D, dtype=dtype, device=device),  # text_pos
        randn(g, B * K, D, dtype=dtype, device=device),  # text_neg, sample-major
        randn(g, B, D, dtype=dtype, device=device),  # teacher_image
        randn(g, B + B * K, D, dtype=dtype, device=device),  # teacher_text
    )


def _degla_call(unit: torch.nn.Module, inputs: Inputs, generator: torch.Generator | None) -> object:
    image, pos, neg, t_img, t_txt = inputs
    return unit(image, pos, neg, teacher_image=t_img, teacher_text=t_txt, logit_scale=3.0)


def _bank_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (
        randn(g, B, D, dtype=dtype, device=device),
        randn(g, N_BANK, D, dtype=dtype, device=device),
        torch.tensor([0, 3, 6, 3], device=device),
    )


def _bank_call(unit: torch.nn.Module, inputs: Inputs, generator: torch.Generator | None) -> object:
    return unit(*inputs, generator=generator)


CONTRACTS: dict[str, Contract] = {
    "DeGLALoss": Contract(
        make=loss(
            "DeGLALoss", tgc_scale=5.0, igc_weight=0.3, distill_weight=0.05, tgc_layout="code"
        ),
        inputs=_degla_inputs,
        call=_degla_call,
        repr_has=("tgc_scale=5.0", "igc_weight=0.3", "distill_weight=0.05", "tgc_layout='code'"),
        grad_args=(0, 1, 2),  # teacher features are detached, as the official teacher runs no_grad
    ),
    "BankInfoNCELoss": Contract(
        make=loss("BankInfoNCELoss", temperature=0.5, num_negatives=3, chunk_size=2),
        inputs=_bank_inputs,
        call=_bank_call,
        repr_has=("temperature=0.5", "num_negatives=3", "chunk_size=2"),
        draws=True,
        grad_args=(0, 1),
    ),
}
