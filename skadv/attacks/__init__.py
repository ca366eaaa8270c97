"""Evasion attacks, plain or adaptive against skadv detectors.

Every attack is constructed as ``Attack(target, **params)`` and used as
``attack.generate(X, y=None)``. ``target`` is a torch module returning
logits, a fitted skorch net, or a fitted skadv estimator; against a skadv
estimator the attack is adaptive by default (classifier and detector are
attacked together through the estimator's extra "rejected" logit).
"""

from ._base import BaseAttack
from ._carlini_wagner import CarliniWagnerL2
from ._gradient import FGSM, PGD
from ._line_search import PGDLineSearch

__all__ = ["BaseAttack", "CarliniWagnerL2", "FGSM", "PGD", "PGDLineSearch"]
