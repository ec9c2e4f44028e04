"""Contract entries for PamC and its Ncontrast baseline (``posneg.losses.pamc``)."""

from __future__ import annotations

import torch

from contract_kit import B, Contract, D, Inputs, call_module, loss, randn

# a fixed ring graph over the B nodes (self-loops included), row-normalised
_RING = torch.eye(B, dtype=torch.float64) + torch.roll(torch.eye(B, dtype=torch.float64), 1, 1)
_RING = (_RING + _RING.T).clamp_max(1.0)
_RING = _RING / _RING.sum(1, keepdim=True)


def _graph_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    return (randn(g, B, D, dtype=dtype, device=device), _RING.to(dtype=dtype, device=device))


def _pamc_inputs(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    z, adj = _graph_inputs(dtype, device, g)
    return (z, adj, torch.tensor([0, 1, 1, 0], device=device))


CONTRACTS: dict[str, Contract] = {
    "PAMCLoss": Contract(
        make=loss("PAMCLoss", tau=0.5, meta="max_id", chunk_size=2),
        inputs=_pamc_inputs,
        call=call_module,
        repr_has=("tau=0.5", "meta='max_id'", "chunk_size=2"),
        grad_args=(0,),
    ),
    "NcontrastLoss": Contract(
        make=loss("NcontrastLoss", tau=0.7, chunk_size=3),
        inputs=_graph_inputs,
        call=call_module,
        repr_has=("tau=0.7", "chunk_size=3"),
        grad_args=(0,),
    ),
}
