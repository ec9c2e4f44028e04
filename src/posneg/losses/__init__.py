"""Objectives that consume positives and negatives: contrastive, supervised and imbalance losses.

Each is a keyword-only pure function plus a thin stateless ``nn.Module``.

Non-finite inputs (the contract of every loss here): a NaN or inf in an input never yields a
finite loss. A loss either raises ``ValueError`` naming the function and the argument
(``supcon: features contains NaN or inf values``), or returns a non-finite value so that the
NaN propagates to the gradient and the caller's own check, as torch's losses do. Which one is
said in each loss' ``Raises`` section: losses whose inputs pass through masks, thresholds or
label lookups that could hide a NaN (SupCon, CACR, AMCL, focal, Dice, FixMatch's confidence
mask, PCL-SR's D-side softplus; CET's weights in ``posneg.mining``) check and raise; the
purely arithmetic InfoNCE/NT-Xent, DCL/DCLW, HCL and MAA propagate, with no extra device
synchronisation per step. Finite inputs give the same results either way. To stop at the
first non-finite value, check ``torch.isfinite(loss)`` in the training loop or run under
``torch.autograd.detect_anomaly()``.
"""

from posneg.losses.amcl import AMCLLoss, amcl
from posneg.losses.cacr import CACRLoss, cacr
from posneg.losses.dcl import DCLLoss, DCLWLoss, dcl, dclw
from posneg.losses.degla import DeGLALoss, DeGLAOutput, degla_loss, ema_update_
from posneg.losses.dice import DiceLoss, dice
from posneg.losses.fixmatch import FixMatchLoss, FixMatchTerms, fixmatch_loss, fixmatch_terms
from posneg.losses.focal import FocalLoss, focal
from posneg.losses.hcl import CrossModalHCLLoss, HCLLoss, hcl, hcl_beta_schedule, hcl_cross_modal
from posneg.losses.info_nce import InfoNCELoss, NTXentLoss, info_nce, nt_xent
from posneg.losses.maa import MAALoss, maa_loss, mix_attribute_embeddings
from posneg.losses.pamc import (
    NcontrastLoss,
    PAMCLoss,
    influence_adjacency,
    knn_graph,
    meta_nodes,
    ncontrast,
    pamc,
)
from posneg.losses.pcl_sr import (
    PCLSRDualContrastiveLoss,
    PCLSREmbedding,
    PCLSRLoss,
    PCLSRParams,
    PCLSRViews,
    PCLSRViewsOutput,
    apply_pcl_sr_views,
    haar_highpass,
    pcl_sr_dual_contrastive_loss,
    pcl_sr_loss,
    pcl_sr_similarity,
    sample_pcl_sr_params,
)
from posneg.losses.spn4cir import (
    BankInfoNCELoss,
    bank_infonce,
    modification_texts,
    sample_window_targets,
)
from posneg.losses.supcon import SupConLoss, supcon
from posneg.losses.unpg import (
    ArcFaceLoss,
    CosFaceLoss,
    UNPGLoss,
    arcface_logits,
    box_and_whisker,
    cosface_logits,
    margin_softmax,
    negative_pair_similarities,
    unpg,
)

__all__ = [
    "AMCLLoss",
    "ArcFaceLoss",
    "BankInfoNCELoss",
    "CACRLoss",
    "CosFaceLoss",
    "CrossModalHCLLoss",
    "DCLLoss",
    "DCLWLoss",
    "DeGLALoss",
    "DeGLAOutput",
    "DiceLoss",
    "FixMatchLoss",
    "FixMatchTerms",
    "FocalLoss",
    "HCLLoss",
    "InfoNCELoss",
    "MAALoss",
    "NTXentLoss",
    "NcontrastLoss",
    "PAMCLoss",
    "PCLSRDualContrastiveLoss",
    "PCLSREmbedding",
    "PCLSRLoss",
    "PCLSRParams",
    "PCLSRViews",
    "PCLSRViewsOutput",
    "SupConLoss",
    "UNPGLoss",
    "amcl",
    "apply_pcl_sr_views",
    "arcface_logits",
    "bank_infonce",
    "box_and_whisker",
    "cacr",
    "cosface_logits",
    "dcl",
    "dclw",
    "degla_loss",
    "dice",
    "ema_update_",
    "fixmatch_loss",
    "fixmatch_terms",
    "focal",
    "haar_highpass",
    "hcl",
    "hcl_beta_schedule",
    "hcl_cross_modal",
    "influence_adjacency",
    "info_nce",
    "knn_graph",
    "maa_loss",
    "margin_softmax",
    "meta_nodes",
    "mix_attribute_embeddings",
    "modification_texts",
    "ncontrast",
    "negative_pair_similarities",
    "nt_xent",
    "pamc",
    "pcl_sr_dual_contrastive_loss",
    "pcl_sr_loss",
    "pcl_sr_similarity",
    "sample_pcl_sr_params",
    "sample_window_targets",
    "supcon",
    "unpg",
]
