"""Generation steered away from negatives: guidance rules and attention hooks for diffusers models.

Imports only torch here; the diffusers attention processor of NegToMe imports diffusers lazily.
"""

from posneg.generative.negtome import NegToMe, negtome
from posneg.generative.perp_neg import PerpNegGuidance, guidance, perp_neg_2d, perp_neg_3d

__all__ = ["NegToMe", "PerpNegGuidance", "guidance", "negtome", "perp_neg_2d", "perp_neg_3d"]
