"""The explicit registry of techniques: name -> where it lives, its paper, its family.

Nothing registers itself at import time: this table is the single list that `posneg list`,
`posneg cite` and the contract test suite read. Modules are imported lazily, only when an entry
is used. Each technique module defines a ``CITATION`` BibTeX string.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Technique:
    """One registered technique.

    Attributes:
        name: the public class or function name (``DCLLoss``).
        key: the short spec name used on the CLI (``dcl``).
        family: the folder it lives in (``losses``).
        module: dotted module path.
        paper: short paper reference (authors, venue, year, arXiv id).
    """

    name: str
    key: str
    family: str
    module: str
    paper: str

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


TECHNIQUES: tuple[Technique, ...] = (
    # --- contrastive objectives (issue: foundation) ---
    Technique(
        "InfoNCELoss",
        "info_nce",
        "losses",
        "posneg.losses.info_nce",
        "van den Oord, Li, Vinyals. Representation Learning with Contrastive Predictive Coding. arXiv 1807.03748, 2018",
    ),
    Technique(
        "NTXentLoss",
        "nt_xent",
        "losses",
        "posneg.losses.info_nce",
        "Chen, Kornblith, Norouzi, Hinton. A Simple Framework for Contrastive Learning (SimCLR). ICML 2020, arXiv 2002.05709",
    ),
    Technique(
        "DCLLoss",
        "dcl",
        "losses",
        "posneg.losses.dcl",
        "Yeh et al. Decoupled Contrastive Learning. ECCV 2022, arXiv 2110.06848",
    ),
    Technique(
        "DCLWLoss",
        "dclw",
        "losses",
        "posneg.losses.dcl",
        "Yeh et al. Decoupled Contrastive Learning. ECCV 2022, arXiv 2110.06848",
    ),
    Technique(
        "HCLLoss",
        "hcl",
        "losses",
        "posneg.losses.hcl",
        "Robinson, Chuang, Sra, Jegelka. Contrastive Learning with Hard Negative Samples. ICLR 2021, arXiv 2010.04592",
    ),
    Technique(
        "CrossModalHCLLoss",
        "hcl_cross_modal",
        "losses",
        "posneg.losses.hcl",
        "Choi, Beedu, Essa. Multimodal Contrastive Learning with Hard Negative Sampling for HAR. arXiv 2309.01262, 2023",
    ),
    Technique(
        "CACRLoss",
        "cacr",
        "losses",
        "posneg.losses.cacr",
        "Zheng et al. Contrastive Attraction and Contrastive Repulsion for Representation Learning. TMLR 2023, arXiv 2105.03746",
    ),
    Technique(
        "AMCLLoss",
        "amcl",
        "losses",
        "posneg.losses.amcl",
        "Wang, Koniusz, Gedeon, Zheng. Adaptive Multi-head Contrastive Learning. ECCV 2024, arXiv 2310.05615",
    ),
    Technique(
        "SupConLoss",
        "supcon",
        "losses",
        "posneg.losses.supcon",
        "Khosla et al. Supervised Contrastive Learning. NeurIPS 2020, arXiv 2004.11362",
    ),
    Technique(
        "MemoryQueue",
        "queue",
        "negatives",
        "posneg.negatives.queue",
        "He, Fan, Wu, Xie, Girshick. Momentum Contrast for Unsupervised Visual Representation Learning. CVPR 2020, arXiv 1911.05722",
    ),
    Technique(
        "MoCHi",
        "mochi",
        "negatives",
        "posneg.negatives.mochi",
        "Kalantidis et al. Hard Negative Mixing for Contrastive Learning. NeurIPS 2020, arXiv 2010.01028",
    ),
    Technique(
        "FeatureTransform",
        "feature_transform",
        "negatives",
        "posneg.negatives.feature_transform",
        "Zhu, Zhao, Liu, Sun, Chen. Improving Contrastive Learning by Visualizing Feature Transformation. ICCV 2021, arXiv 2108.02982",
    ),
    # --- imbalance (issue: imbalance) ---
    Technique(
        "SMOTE",
        "smote",
        "oversampling",
        "posneg.oversampling.smote",
        "Chawla, Bowyer, Hall, Kegelmeyer. SMOTE: Synthetic Minority Over-sampling Technique. JAIR 2002, arXiv 1106.1813",
    ),
    Technique(
        "BorderlineSMOTE",
        "borderline_smote",
        "oversampling",
        "posneg.oversampling.borderline_smote",
        "Han, Wang, Mao. Borderline-SMOTE. ICIC 2005",
    ),
    Technique(
        "ADASYN",
        "adasyn",
        "oversampling",
        "posneg.oversampling.adasyn",
        "He, Bai, Garcia, Li. ADASYN: Adaptive Synthetic Sampling Approach for Imbalanced Learning. IJCNN 2008",
    ),
    Technique(
        "SMOTENC",
        "smotenc",
        "oversampling",
        "posneg.oversampling.smotenc",
        "Chawla, Bowyer, Hall, Kegelmeyer. SMOTE: Synthetic Minority Over-sampling Technique. JAIR 2002, arXiv 1106.1813",
    ),
    Technique(
        "BalancedBatchSampler",
        "balanced_sampler",
        "oversampling",
        "posneg.oversampling.sampler",
        "Class-balanced batch sampling (imbalanced-learn's BalancedBatchGenerator, as a PyTorch Sampler)",
    ),
    Technique(
        "LaSO",
        "laso",
        "oversampling",
        "posneg.oversampling.laso",
        "Alfassy et al. LaSO: Label-Set Operations networks for multi-label few-shot learning. CVPR 2019, arXiv 1902.09811",
    ),
    Technique(
        "DiceLoss",
        "dice",
        "losses",
        "posneg.losses.dice",
        "Li, Sun, Meng, Liang, Wu, Li. Dice Loss for Data-imbalanced NLP Tasks. ACL 2020, arXiv 1911.02855",
    ),
    Technique(
        "FocalLoss",
        "focal",
        "losses",
        "posneg.losses.focal",
        "Lin, Goyal, Girshick, He, Dollar. Focal Loss for Dense Object Detection. ICCV 2017, arXiv 1708.02002",
    ),
    # --- batch mixing (issue: mixing) ---
    Technique(
        "MixUp",
        "mixup",
        "mixing",
        "posneg.mixing.mixup",
        "Zhang, Cisse, Dauphin, Lopez-Paz. mixup: Beyond Empirical Risk Minimization. ICLR 2018, arXiv 1710.09412",
    ),
    Technique(
        "CutMix",
        "cutmix",
        "mixing",
        "posneg.mixing.cutmix",
        "Yun, Han, Oh, Chun, Choe, Yoo. CutMix: Regularization Strategy to Train Strong Classifiers with Localizable Features. ICCV 2019, arXiv 1905.04899",
    ),
    Technique(
        "FMix",
        "fmix",
        "mixing",
        "posneg.mixing.fmix",
        "Harris, Marcu, Painter, Niranjan, Prugel-Bennett, Hare. FMix: Enhancing Mixed Sample Data Augmentation. arXiv 2002.12047, 2020",
    ),
    Technique(
        "ResizeMix",
        "resizemix",
        "mixing",
        "posneg.mixing.resizemix",
        "Qin, Fang, Zhang, Liu, Wang, Wang. ResizeMix: Mixing Data with Preserved Object Information and True Labels. arXiv 2012.11101, 2020",
    ),
    Technique(
        "MinorityMix",
        "minority_mix",
        "mixing",
        "posneg.mixing.minority",
        "Kim, Lee, Park, Sohn. Hierarchical Visual Primitive Experts for Compositional Zero-Shot Learning (CoT, minority attribute augmentation). ICCV 2023, arXiv 2308.04016",
    ),
    # --- augmentation (issue: mixing/augment) ---
    Technique(
        "RandAugment",
        "randaugment",
        "augment",
        "posneg.augment.randaugment",
        "Cubuk, Zoph, Shlens, Le. RandAugment: Practical automated data augmentation with a reduced search space. NeurIPS 2020, arXiv 1909.13719",
    ),
    Technique(
        "Corruptions",
        "corruptions",
        "augment",
        "posneg.augment.corruptions",
        "Di Salvo, Doerrich, Ledig. MedMNIST-C: Comprehensive benchmark and improved classifier robustness by simulating realistic image corruptions. arXiv 2406.17536, 2024",
    ),
    Technique(
        "RandomField",
        "random_field",
        "augment",
        "posneg.augment.random_field",
        "Mansfield, Afkanpour, Morningstar, Singhal. Random Field Augmentations for Self-Supervised Representation Learning. NeurIPS 2023 Workshop (PMLR 228), arXiv 2311.03629",
    ),
    Technique(
        "Resample",
        "resample",
        "augment",
        "posneg.augment.resample",
        "Cao, Li, Cao, Tsang, Liu, Guo. IRAD: Implicit Representation-driven Image Resampling against Adversarial Attacks. ICLR 2024, arXiv 2310.11890 (basic resampling)",
    ),
    # --- mining: retrieval training strategies (issue 4) ---
    Technique(
        "STARLoss",
        "star",
        "mining",
        "posneg.mining.strategies.star",
        "Zhan, Mao, Liu, Guo, Zhang, Ma. Optimizing Dense Retrieval Model Training with Hard Negatives (STAR). SIGIR 2021, arXiv 2104.08051",
    ),
    Technique(
        "ADORELoss",
        "adore",
        "mining",
        "posneg.mining.strategies.adore",
        "Zhan, Mao, Liu, Guo, Zhang, Ma. Optimizing Dense Retrieval Model Training with Hard Negatives (ADORE). SIGIR 2021, arXiv 2104.08051",
    ),
    Technique(
        "TripletMarginOHNMLoss",
        "triplet_margin_ohnm",
        "mining",
        "posneg.mining.strategies.ngame",
        "Dahiya et al. NGAME: Negative Mining-aware Mini-batching for Extreme Classification. WSDM 2023, arXiv 2207.04452",
    ),
    Technique(
        "NGAMESampler",
        "ngame_sampler",
        "mining",
        "posneg.mining.strategies.ngame",
        "Dahiya et al. NGAME: Negative Mining-aware Mini-batching for Extreme Classification. WSDM 2023, arXiv 2207.04452",
    ),
)


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
    """Look a technique up by class name or spec key, case-insensitively.

    Raises:
        KeyError: with the list of known names when nothing matches.
    """
    low = name.lower().replace("-", "_")
    for t in available():
        if low in (t.name.lower(), t.key):
            return t
    known = ", ".join(sorted(t.key for t in available()))
    raise KeyError(f"unknown technique {name!r}; known: {known}")
