"""Adversarial examples and defences: FGSM/PGD attacks, AAER regularisation, IRAD resampling."""

from posneg.adversarial.attacks import FGSM, PGD, fgsm, pgd

__all__ = ["FGSM", "PGD", "fgsm", "pgd"]
