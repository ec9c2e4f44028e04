"""The one table of techniques: key, class, module, family and paper of every technique.

Nothing registers itself at import time: :data:`TECHNIQUES` below is the single list that
`posneg list`, `posneg cite`, every bench's spec parser, the contract test suite and
``docs/techniques.md`` (kept equal to it by a test) read. Modules are imported lazily, only when
an entry is used. Each technique module defines a ``CITATION`` BibTeX string (or a
``CITATIONS`` dict, class name -> BibTeX, when it holds techniques of several papers).

Example:
    >>> from posneg import registry
    >>> registry.get("ft").key
    'feature_transform'
    >>> registry.get("dcl").line()
    'dcl                  losses       Yeh et al., DCL, ECCV 2022'
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["FAMILIES", "TECHNIQUES", "Technique", "available", "families", "find", "get"]

#: Width of the key and family columns of :meth:`Technique.line` (`posneg list`).
KEY_WIDTH = 20
FAMILY_WIDTH = 12
#: The longest line `posneg list` may print.
LINE_WIDTH = 100


@dataclass(frozen=True)
class Technique:
    """One registered technique.

    Attributes:
        name: the public class name (``DCLLoss``).
        key: the short name used by `posneg cite`, `posneg list` and bench specs (``dcl``).
        family: the package it lives in (``losses``).
        module: dotted module path.
        paper: short reference: first authors, the paper's short name, venue and year
            (``Yeh et al., DCL, ECCV 2022``).
        arxiv: the arXiv id, or ``""``.
        aliases: other keys accepted for this technique (old spellings such as ``ft``).
    """

    name: str
    key: str
    family: str
    module: str
    paper: str
    arxiv: str = ""
    aliases: tuple[str, ...] = ()

    def reference(self) -> str:
        """The paper column of the catalogue: ``paper`` plus the arXiv id when there is one."""
        return f"{self.paper}, arXiv {self.arxiv}" if self.arxiv else self.paper

    def line(self) -> str:
        """One `posneg list` line (at most 100 columns): key, family, paper."""
        text = f"{self.key:<{KEY_WIDTH}} {self.family:<{FAMILY_WIDTH}} {self.paper}"
        return text if len(text) <= LINE_WIDTH else text[: LINE_WIDTH - 3] + "..."

    def record(self) -> dict[str, Any]:
        """Every field as a JSON-ready dict (`posneg list --json`)."""
        return {**asdict(self), "aliases": list(self.aliases), "reference": self.reference()}

    def load(self) -> Any:
        """Import and return the registered object."""
        return getattr(importlib.import_module(self.module), self.name)

    def citation(self) -> str:
        """The BibTeX entry of the technique's paper.

        A module holding several techniques from different papers may define a dict
        ``CITATIONS`` (class name -> BibTeX); an entry there wins over the module's ``CITATION``.
        """
        module = importlib.import_module(self.module)
        per_name = getattr(module, "CITATIONS", {})
        return str(per_name.get(self.name, module.CITATION)).strip()


def _t(
    name: str,
    key: str,
    family: str,
    module: str,
    paper: str,
    arxiv: str = "",
    aliases: tuple[str, ...] = (),
) -> Technique:
    return Technique(name, key, family, f"posneg.{module}", paper, arxiv, aliases)


_MOCO = "He et al., MoCo, CVPR 2020"
_STAR = "Zhan et al., STAR/ADORE, SIGIR 2021"
_NGAME = "Dahiya et al., NGAME, WSDM 2023"
_COT = "Kim et al., CoT minority attribute augmentation, ICCV 2023"

#: Every technique, in catalogue order.
TECHNIQUES: tuple[Technique, ...] = (
    # contrastive objectives
    _t("InfoNCELoss", "info_nce", "losses", "losses.info_nce", "van den Oord et al., CPC, 2018", "1807.03748"),
    _t("NTXentLoss", "nt_xent", "losses", "losses.info_nce", "Chen et al., SimCLR, ICML 2020", "2002.05709"),
    _t("DCLLoss", "dcl", "losses", "losses.dcl", "Yeh et al., DCL, ECCV 2022", "2110.06848"),
    _t("DCLWLoss", "dclw", "losses", "losses.dcl", "Yeh et al., DCL (weighted), ECCV 2022", "2110.06848"),
    _t("HCLLoss", "hcl", "losses", "losses.hcl", "Robinson et al., HCL, ICLR 2021", "2010.04592"),
    _t("CrossModalHCLLoss", "hcl_cross_modal", "losses", "losses.hcl", "Choi, Beedu, Essa, multimodal HCL for HAR, 2023", "2309.01262"),
    _t("CACRLoss", "cacr", "losses", "losses.cacr", "Zheng et al., CACR, TMLR 2023", "2105.03746"),
    _t("AMCLLoss", "amcl", "losses", "losses.amcl", "Wang et al., AMCL, ECCV 2024", "2310.05615"),
    _t("SupConLoss", "supcon", "losses", "losses.supcon", "Khosla et al., SupCon, NeurIPS 2020", "2004.11362"),
    _t("PAMCLoss", "pamc", "losses", "losses.pamc", "Kulatilleke et al., PamC, arXiv 2022", "2209.14067"),
    _t("NcontrastLoss", "ncontrast", "losses", "losses.pamc", "Kulatilleke et al., Ncontrast baseline of PamC, arXiv 2022", "2209.14067"),
    _t("CosFaceLoss", "cosface", "losses", "losses.unpg", "Wang et al., CosFace, CVPR 2018", "1801.09414"),
    _t("ArcFaceLoss", "arcface", "losses", "losses.unpg", "Deng et al., ArcFace, CVPR 2019", "1801.07698"),
    _t("UNPGLoss", "unpg", "losses", "losses.unpg", "Jung et al., UNPG, BMVC 2022", "2203.11593"),
    _t("PCLSRLoss", "pcl_sr", "losses", "losses.pcl_sr", "Wu et al., PCL-SR, TNNLS 2023", "2111.13924"),
    _t("PCLSRDualContrastiveLoss", "pcl_sr_d", "losses", "losses.pcl_sr", "Wu et al., PCL-SR (D-side dual contrastive), TNNLS 2023", "2111.13924"),
    _t("PCLSRViews", "pcl_sr_views", "losses", "losses.pcl_sr", "Wu et al., PCL-SR (positives and hard negatives), TNNLS 2023", "2111.13924"),
    _t("DeGLALoss", "degla", "losses", "losses.degla", "Hu et al., DeGLA, ACM MM 2025", "2504.16801"),
    _t("BankInfoNCELoss", "spn4cir", "losses", "losses.spn4cir", "Feng et al., SPN4CIR, ACM MM 2024", "2404.11317"),
    # negatives in embedding space
    _t("MemoryQueue", "moco", "negatives", "negatives.queue", _MOCO, "1911.05722", ("queue",)),
    _t("MoCHi", "mochi", "negatives", "negatives.mochi", "Kalantidis et al., MoCHi, NeurIPS 2020", "2010.01028"),
    _t("FeatureTransform", "feature_transform", "negatives", "negatives.feature_transform", "Zhu et al., Feature Transformation, ICCV 2021", "2108.02982", ("ft",)),
    # imbalance
    _t("SMOTE", "smote", "oversampling", "oversampling.smote", "Chawla et al., SMOTE, JAIR 2002", "1106.1813"),
    _t("BorderlineSMOTE", "borderline_smote", "oversampling", "oversampling.borderline_smote", "Han, Wang, Mao, Borderline-SMOTE, ICIC 2005"),
    _t("ADASYN", "adasyn", "oversampling", "oversampling.adasyn", "He et al., ADASYN, IJCNN 2008"),
    _t("SMOTENC", "smotenc", "oversampling", "oversampling.smotenc", "Chawla et al., SMOTE-NC, JAIR 2002", "1106.1813"),
    _t("BalancedBatchSampler", "balanced_sampler", "oversampling", "oversampling.sampler", "Lemaitre et al., imbalanced-learn balanced batches, JMLR 2017"),
    _t("LaSO", "laso", "oversampling", "oversampling.laso", "Alfassy et al., LaSO, CVPR 2019", "1902.09811"),
    _t("DiceLoss", "dice", "losses", "losses.dice", "Li et al., Dice Loss, ACL 2020", "1911.02855"),
    _t("FocalLoss", "focal", "losses", "losses.focal", "Lin et al., Focal Loss, ICCV 2017", "1708.02002"),
    # batch mixing
    _t("MixUp", "mixup", "mixing", "mixing.mixup", "Zhang et al., mixup, ICLR 2018", "1710.09412"),
    _t("CutMix", "cutmix", "mixing", "mixing.cutmix", "Yun et al., CutMix, ICCV 2019", "1905.04899"),
    _t("FMix", "fmix", "mixing", "mixing.fmix", "Harris et al., FMix, 2020", "2002.12047"),
    _t("ResizeMix", "resizemix", "mixing", "mixing.resizemix", "Qin et al., ResizeMix, 2020", "2012.11101"),
    _t("MinorityMix", "minority_mix", "mixing", "mixing.minority", "Kim et al., CoT minority attribute mixing, ICCV 2023", "2308.04016"),
    _t("MinorityPartnerSampler", "cot_sampler", "mixing", "mixing.minority", _COT, "2308.04016"),
    _t("AdAutoMix", "adautomix", "mixing", "mixing.adautomix", "Qin et al., Adversarial AutoMixup, ICLR 2024", "2312.11954"),
    _t("MAALoss", "maa", "losses", "losses.maa", _COT, "2308.04016"),
    # augmentation
    _t("RandAugment", "randaugment", "augment", "augment.randaugment", "Cubuk et al., RandAugment, NeurIPS 2020", "1909.13719"),
    _t("Corruptions", "corruptions", "augment", "augment.corruptions", "Di Salvo et al., MedMNIST-C, 2024", "2406.17536"),
    _t("RandomField", "random_field", "augment", "augment.random_field", "Mansfield et al., Random Field Augmentations, PMLR 228, 2024", "2311.03629"),
    _t("Resample", "resample", "augment", "augment.resample", "Cao et al., IRAD (basic resampling), ICLR 2024", "2310.11890"),
    _t("ForAug", "foraug", "augment", "augment.foraug", "Nauen et al., ForAug, 2025", "2503.09399"),
    _t("MADAugPolicy", "madaug", "augment", "augment.madaug", "Hou et al., MADAug, ICCV 2023", "2309.04747"),
    _t("NoiseMaskPolicy", "noise_mask", "augment", "augment.noise_mask", "Yavuz & Yang, Policy Gradient-Driven Noise Mask, 2024", "2406.14568"),
    _t("InvarianceSampler", "invariance_aug", "augment", "augment.invariance", "Hounie et al., Invariance-Constrained Augmentation, ICML 2023", "2209.15031"),
    # semi-supervised learning
    _t("FixMatchLoss", "fixmatch", "losses", "losses.fixmatch", "Sohn et al., FixMatch, NeurIPS 2020", "2001.07685"),
    _t("SampleAdaptiveAugmentation", "saa", "selection", "selection.saa", "Gui et al., SAA, ICCV 2023", "2309.03598"),
    _t("CoresetSelector", "coreset", "selection", "selection.coresets", "Liu & Mirzasoleiman, Data-Efficient Augmentation, NeurIPS 2022", "2210.08363"),
    _t("ClassDependentLoss", "class_dep_pruning", "selection", "selection.compression", "Entezari and Saukh, Class-dependent Pruning, SenSys-ML 2020", "1909.10364"),
    _t("ObserverLabelFusion", "observer_fusion", "selection", "selection.observers", "Chalcroft et al., negative frames and observers, ASMUS 2021", "2108.04114"),
    # retrieval training strategies
    _t("STARLoss", "star", "mining", "mining.strategies.star", _STAR, "2104.08051"),
    _t("RandNegLoss", "rand_neg", "mining", "mining.strategies.randneg", _STAR, "2104.08051"),
    _t("ADORELoss", "adore", "mining", "mining.strategies.adore", _STAR, "2104.08051"),
    _t("TripletMarginOHNMLoss", "triplet_margin_ohnm", "mining", "mining.strategies.ngame", _NGAME, "2207.04452"),
    _t("NGAMESampler", "ngame_sampler", "mining", "mining.strategies.ngame", _NGAME, "2207.04452"),
    _t("AR2Loss", "ar2", "mining", "mining.strategies.ar2", "Zhang et al., AR2, ICLR 2022", "2110.03611"),
    _t("CoCoSoDaLoss", "cocosoda", "mining", "mining.strategies.cocosoda", "Shi et al., CoCoSoDa, ICSE 2023", "2204.03293"),
    _t("CETLoss", "cet", "mining", "mining.strategies.cet", "Cai et al., CET, CIKM 2022", "2209.05072"),
    _t("NBPO", "nbpo", "mining", "mining.strategies.nbpo", "Yu and Qin, NBPO, SIGIR 2020"),
    # out-of-distribution detectors
    _t("MaxSoftmax", "msp", "ood", "ood.baselines", "Hendrycks & Gimpel, MSP baseline, ICLR 2017", "1610.02136"),
    _t("MaxLogit", "max_logit", "ood", "ood.baselines", "Hendrycks et al., MaxLogit, ICML 2022", "1911.11132"),
    _t("EnergyScore", "energy", "ood", "ood.baselines", "Liu et al., Energy-based OOD, NeurIPS 2020", "2010.03759"),
    _t("KNNDistance", "knn_ood", "ood", "ood.baselines", "Sun et al., deep k-NN OOD, ICML 2022", "2204.06507"),
    _t("Mahalanobis", "mahalanobis", "ood", "ood.mahalanobis", "Lee et al., Mahalanobis, NeurIPS 2018", "1807.03888"),
    _t("MahalanobisEnsemble", "mahalanobis_ensemble", "ood", "ood.mahalanobis", "Lee et al., Mahalanobis (feature ensemble), NeurIPS 2018", "1807.03888"),
    _t("EPSAD", "eps_ad", "ood", "ood.eps_ad", "Zhang et al., EPS-AD, ICML 2023", "2305.16035"),
    _t("UniCLRLoss", "unicon_ha", "ood", "ood.unicon_ha", "Wang et al., UniCon-HA, ICCV 2023", "2308.10155"),
    _t("CLIPNLoss", "clipn", "ood", "ood.clipn", "Wang et al., CLIPN, ICCV 2023", "2308.12213"),
    _t("CLIPNNoPrompt", "clipn_prompt", "ood", "ood.clipn", "Wang et al., CLIPN (learnable no prompts), ICCV 2023", "2308.12213"),
    _t("CLIPNScore", "clipn_score", "ood", "ood.clipn", "Wang et al., CLIPN (CTW and ATD), ICCV 2023", "2308.12213"),
    # adversarial attacks and defences
    _t("FGSM", "fgsm", "adversarial", "adversarial.attacks", "Goodfellow et al., FGSM, ICLR 2015", "1412.6572"),
    _t("PGD", "pgd", "adversarial", "adversarial.attacks", "Madry et al., PGD, ICLR 2018 (FGSM step of 2015)", "1706.06083"),
    _t("AAERLoss", "aaer", "adversarial", "adversarial.aaer", "Lin et al., AAER, NeurIPS 2023", "2404.08154"),
    _t("IRAD", "irad", "adversarial", "adversarial.irad", "Cao et al., IRAD, ICLR 2024", "2310.11890"),
    # training-time layers
    _t("MultiSampleDropout", "msd", "layers", "layers.multisample_dropout", "Inoue, Multi-Sample Dropout, arXiv 2019", "1905.09788"),
    # generation steered away from negatives
    _t("PerpNegGuidance", "perp_neg", "generative", "generative.perp_neg", "Armandpour et al., Perp-Neg, arXiv 2023", "2304.04968"),
    _t("NegToMe", "negtome", "generative", "generative.negtome", "Singh et al., NegToMe, arXiv 2024", "2412.01339"),
    _t("ANTUncertaintyWeighting", "ant_uw", "generative", "generative.ant", "Go et al., ANT, NeurIPS 2023", "2306.00354"),
    _t("AugmentedConditioning", "augmented_conditioning", "generative", "generative.augmented_conditioning", "Chen et al., Augmented Conditioning, arXiv 2025", "2502.04475"),
    _t("EWCPenalty", "ewc_adapt", "generative", "generative.unlearn", "Tiwary et al., Adapt-then-Unlearn, TMLR 2025", "2309.14054"),
    _t("RepulsionLoss", "repulsion_unlearn", "generative", "generative.unlearn", "Tiwary et al., Adapt-then-Unlearn, TMLR 2025", "2309.14054"),
    # negatives for text generators
    _t("RAFTSelector", "raft", "text", "text.raft", "Dong et al., RAFT, TMLR 2023", "2304.06767"),
    _t("ImperfectVerifier", "resampling_limits", "text", "text.verifiers", "Stroebl et al., Inference Scaling fLaws, arXiv 2024", "2411.17501"),
    _t("PerStepDPOLoss", "per_step_dpo", "text", "text.per_step", "Setlur et al., RL on Incorrect Synthetic Data, NeurIPS 2024", "2406.14532"),
    _t("DiscoTeacherFilter", "disco", "text", "text.disco", "Chen et al., DISCO, ACL 2023", "2212.10534"),
    # positives and negatives in detection
    _t("ATSSAssigner", "atss", "detection", "detection.atss", "Zhang et al., ATSS, CVPR 2020", "1912.02424"),
    _t("IoUThresholdAssigner", "iou_assigner", "detection", "detection.atss", "Lin et al., RetinaNet IoU-threshold assignment, ICCV 2017", "1708.02002"),
    _t("CQDINOSelectionLoss", "cq_dino", "detection", "detection.cq_dino", "Sun et al., CQ-DINO, arXiv 2025", "2503.18430"),
    _t("CategoryTreeAggregation", "cq_dino_tree", "detection", "detection.cq_dino", "Sun et al., CQ-DINO (category tree), arXiv 2025", "2503.18430"),
    _t("CategoryQuerySelector", "cq_dino_selector", "detection", "detection.cq_dino", "Sun et al., CQ-DINO (image-guided selector), arXiv 2025", "2503.18430"),
    _t("RelationWeightedLoss", "grounded_teacher", "detection", "detection.grounded_teacher", "Ashraf et al., Grounded Teacher, arXiv 2025", "2504.15404"),
    _t("WSCoLLoss", "wscol", "detection", "detection.wscol", "Yang et al., WSCoL, arXiv 2024", "2410.05557"),
    # synthetic data as positives
    _t("GDAMixSampler", "gda_mix", "synthetic", "synthetic.mixing", "Zheng, Wu, Li, GDA, NeurIPS 2023", "2305.17476"),
    _t("BGMMGapSimulation", "gda_bgmm", "synthetic", "synthetic.gda", "Zheng, Wu, Li, GDA bGMM simulation, NeurIPS 2023", "2305.17476"),
    _t("CoDSA", "codsa", "synthetic", "synthetic.codsa", "Tian & Shen, CoDSA, arXiv 2025", "2504.07426"),
    _t("FakeToRealTrainer", "fake_to_real", "synthetic", "synthetic.fake_to_real", "Qraitem et al., From Fake to Real, arXiv 2023", "2308.04553"),
    _t("LeavingRealityAugmentation", "leaving_reality", "synthetic", "synthetic.leaving_reality", "Bansal & Grover, Leaving Reality to Imagination, arXiv 2023", "2302.02503"),
    _t("ASPIRESelector", "aspire", "synthetic", "synthetic.aspire", "Ghosh et al., ASPIRE, arXiv 2023", "2308.10103"),
    _t("CDvGLoss", "cdvg", "synthetic", "synthetic.cdvg", "Jung et al., CDvG, ICML 2023", "2112.01021"),
    _t("EchoGAINSAugment", "echogains", "synthetic", "synthetic.echogains", "Van De Vyver et al., EchoGAINS, arXiv 2025", "2502.20100"),
    _t("MHERGANSelector", "mhergan", "synthetic", "synthetic.mhergan", "Feng et al., MhERGAN (MH-GAN stand-in), arXiv 2024", "2411.16567"),
)  # fmt: skip

#: The families, in catalogue order.
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(t.family for t in TECHNIQUES))


def _normal(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _index() -> dict[str, Technique]:
    out: dict[str, Technique] = {}
    for t in TECHNIQUES:
        for k in (t.key, *t.aliases):
            out[k] = t
    return out


_BY_KEY = _index()


def get(key: str) -> Technique:
    """The technique of a key or alias (``ft`` -> ``feature_transform``), case-insensitively.

    Raises:
        KeyError: with the list of known keys when nothing matches.
    """
    low = _normal(key)
    if low in _BY_KEY:
        return _BY_KEY[low]
    known = ", ".join(sorted(t.key for t in TECHNIQUES))
    raise KeyError(f"unknown technique {key!r}; known: {known}")


def families() -> tuple[str, ...]:
    """The family names, in catalogue order."""
    return FAMILIES


def available() -> tuple[Technique, ...]:
    """Registered techniques whose module is present in this installation."""
    out = []
    for t in TECHNIQUES:
        try:
            importlib.import_module(t.module)
        except ModuleNotFoundError:
            continue
        out.append(t)
    return tuple(out)


def find(name: str) -> Technique:
    """Look a technique up by class name, key or alias, case-insensitively.

    Raises:
        KeyError: with the list of known keys when nothing available matches.
    """
    low = _normal(name)
    for t in available():
        if low in (t.name.lower(), t.key, *t.aliases):
            return t
    known = ", ".join(sorted(t.key for t in available()))
    raise KeyError(f"unknown technique {name!r}; known: {known}")
