"""Attack probes: FGSM, BIM, PGD L∞/L2, L2GRAD, C&W L2, FAB, AutoAttack, minimal ε and the worst case.

Every torchattacks call lives in :mod:`robaudit.probes.attacks.torchattacks_adapter`; every
adversarial example is re-checked by :mod:`robaudit.probes.attacks.verify`; the gradient-masking
checks are in :mod:`robaudit.probes.attacks.sanity`. See ``docs/attacks.md``.
"""
