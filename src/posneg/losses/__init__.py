"""Objectives that consume positives and negatives: contrastive, supervised and imbalance losses.

Each is a keyword-only pure function plus a thin stateless ``nn.Module``.

Non-finite inputs (the contract of every loss here): a NaN or inf in an input never yields a
finite loss. A loss either raises ``ValueError`` naming the function and the argument
(``supcon: features contains NaN or inf values``), or returns a non-finite value so that the
NaN propagates to the gradient and the caller's own check, as torch's losses do. Which one is
said in each loss' ``Raises`` section: losses whose inputs pass through masks, thresholds or
label lookups that could hide a NaN (SupCon, CACR, AMCL, focal, Dice) check and raise; the
purely arithmetic InfoNCE/NT-Xent, DCL/DCLW, HCL and MAA propagate, with no extra device
synchronisation per step. Finite inputs give the same results either way. To stop at the
first non-finite value, check ``torch.isfinite(loss)`` in the training loop or run under
``torch.autograd.detect_anomaly()``.
"""

from posneg.losses.amcl import AMCLLoss, amcl
from posneg.losses.cacr import CACRLoss, cacr
from posneg.losses.dcl import DCLLoss, DCLWLoss, dcl, dclw
from posneg.losses.dice import DiceLoss, dice
from posneg.losses.focal import FocalLoss, focal
from posneg.losses.hcl import CrossModalHCLLoss, HCLLoss, hcl, hcl_beta_schedule, hcl_cross_modal
from posneg.losses.info_nce import InfoNCELoss, NTXentLoss, info_nce, nt_xent
from posneg.losses.maa import MAALoss, maa_loss, mix_attribute_embeddings
from posneg.losses.supcon import SupConLoss, supcon

__all__ = [
    "AMCLLoss",
    "CACRLoss",
    "CrossModalHCLLoss",
    "DCLLoss",
    "DCLWLoss",
    "DiceLoss",
    "FocalLoss",
    "HCLLoss",
    "InfoNCELoss",
    "MAALoss",
    "NTXentLoss",
    "SupConLoss",
    "amcl",
    "cacr",
    "dcl",
    "dclw",
    "dice",
    "focal",
    "hcl",
    "hcl_beta_schedule",
    "hcl_cross_modal",
    "info_nce",
    "maa_loss",
    "mix_attribute_embeddings",
    "nt_xent",
    "supcon",
]
