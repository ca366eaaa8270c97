"""Evasion attacks, plain or adaptive against skadv detectors.

Every attack is constructed as ``Attack(target, **params)`` and used as
``attack.generate(X, y=None)``. ``target`` is a torch module returning
logits, a fitted skorch net, or any estimator implementing the attack
protocol (``attack_surface()``, see :class:`skadv.utils.AttackSurface`):
every skadv estimator, or a third-party detector. Against such an
estimator the attack is adaptive by default (classifier and detector are
attacked together through the surface's extra "rejected" column).
"""

from ._apgd import APGD
from ._auto import AutoAttack
from ._base import BaseAttack
from ._carlini_wagner import CarliniWagnerL2
from ._checks import AttackFailureWarning, check_attack_failure
from ._gradient import FGSM, PGD
from ._line_search import PGDLineSearch
from ._orthogonal import OrthogonalPGD
from ._square import Square

__all__ = [
    "APGD",
    "FGSM",
    "PGD",
    "AttackFailureWarning",
    "AutoAttack",
    "BaseAttack",
    "CarliniWagnerL2",
    "OrthogonalPGD",
    "PGDLineSearch",
    "Square",
    "check_attack_failure",
]
