"""Objectives that consume positives and negatives: contrastive, supervised and imbalance losses.

Each is a keyword-only pure function plus a thin stateless ``nn.Module``.
"""

from posneg.losses.amcl import AMCLLoss, amcl
from posneg.losses.cacr import CACRLoss, cacr
from posneg.losses.dcl import DCLLoss, DCLWLoss, dcl, dclw
from posneg.losses.dice import DiceLoss, dice
from posneg.losses.focal import FocalLoss, focal
from posneg.losses.hcl import CrossModalHCLLoss, HCLLoss, hcl, hcl_cross_modal
from posneg.losses.info_nce import InfoNCELoss, NTXentLoss, info_nce, nt_xent
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
    "NTXentLoss",
    "SupConLoss",
    "amcl",
    "cacr",
    "dcl",
    "dclw",
    "dice",
    "focal",
    "hcl",
    "hcl_cross_modal",
    "info_nce",
    "nt_xent",
    "supcon",
]
