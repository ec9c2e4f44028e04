"""Adversarial examples and defences: FGSM/PGD attacks, AAER regularisation, IRAD resampling."""

from posneg.adversarial.aaer import AAERLoss, AAEROutput, aaer_loss, aaer_regularizer
from posneg.adversarial.attacks import FGSM, PGD, fgsm, pgd
from posneg.adversarial.irad import IRAD, LocalImplicitImage, SampleNet, irad

__all__ = [
    "FGSM",
    "IRAD",
    "PGD",
    "AAERLoss",
    "AAEROutput",
    "LocalImplicitImage",
    "SampleNet",
    "aaer_loss",
    "aaer_regularizer",
    "fgsm",
    "irad",
    "pgd",
]
