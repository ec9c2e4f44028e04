"""Contracts of det1's units: ``ATSSAssigner`` and ``IoUThresholdAssigner`` (posneg.detection.atss).

Both map anchors ``(A, 4)`` and ground-truth boxes ``(G, 4)`` to int64 index tensors
(:class:`posneg.detection.atss.Assignment`); nothing is drawn, nothing is differentiable, and
the outputs carry no floating dtype.
"""

from __future__ import annotations

from typing import Any

import torch

from contract_kit import Contract, Inputs, loss

_INT_OUT = "the assignment is int64 indices and labels; no floating output to follow the dtype"
_NO_GRAD = "anchor assignment is a discrete selection; nothing to differentiate"


def _anchors(dtype: torch.dtype, device: torch.device, g: torch.Generator) -> Inputs:
    c = torch.arange(2.0, 32.0, 4.0)
    cy, cx = torch.meshgrid(c, c, indexing="ij")
    ctr = torch.stack((cx.flatten(), cy.flatten()), dim=1)
    anchors = torch.cat(
        (torch.cat((ctr - 8, ctr + 8), 1), torch.cat((ctr[::4] - 16, ctr[::4] + 16), 1))
    )
    xy = torch.rand(3, 2, generator=g) * 20
    wh = torch.rand(3, 2, generator=g) * 10 + 4
    boxes = torch.cat((xy, xy + wh), dim=1)
    labels = torch.randint(0, 5, (3,), generator=g)
    return (
        anchors.to(dtype=dtype, device=device),
        boxes.to(dtype=dtype, device=device),
        labels.to(device),
    )


def _call_atss(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    anchors, boxes, labels = inputs
    return unit(anchors, [64, 16], boxes, labels)


def _call_iou(unit: Any, inputs: Inputs, generator: torch.Generator | None) -> Any:
    anchors, boxes, labels = inputs
    return unit(anchors, boxes, labels)


_NA = {"grad": _NO_GRAD, "grad_flow": _NO_GRAD, "dtype": _INT_OUT, "half": _INT_OUT}

CONTRACTS: dict[str, Contract] = {
    "ATSSAssigner": Contract(
        make=loss("ATSSAssigner", topk=5, ensure_positive=True),
        inputs=_anchors,
        call=_call_atss,
        repr_has=("topk=5", "ensure_positive=True"),
        not_applicable=_NA,
    ),
    "IoUThresholdAssigner": Contract(
        make=loss("IoUThresholdAssigner", pos_iou=0.45, neg_iou=0.35),
        inputs=_anchors,
        call=_call_iou,
        repr_has=("pos_iou=0.45", "neg_iou=0.35"),
        not_applicable=_NA,
    ),
}
