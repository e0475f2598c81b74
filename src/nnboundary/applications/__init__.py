"""The paper's two applications, measured: SVM support-vector replay against catastrophic forgetting
(:mod:`~nnboundary.applications.forgetting`) and margin-guided adversarial attacks
(:mod:`~nnboundary.applications.adversarial`).

Both are hypotheses from the paper's discussion (§6); these modules run them as experiments and report what
they measure. Experiments are plain dicts (:data:`FORGETTING_EXPERIMENTS`, :data:`ADVERSARIAL_EXPERIMENTS`)
with ``smoke``/``quick``/``paper`` profiles; :func:`run_forgetting` and :func:`run_adversarial` run them.
"""

from nnboundary.applications.adversarial import (
    ADVERSARIAL_EXPERIMENTS,
    adversarial_config,
    run_adversarial,
)
from nnboundary.applications.forgetting import (
    FORGETTING_EXPERIMENTS,
    forgetting_config,
    run_forgetting,
)

__all__ = [
    "ADVERSARIAL_EXPERIMENTS",
    "FORGETTING_EXPERIMENTS",
    "adversarial_config",
    "forgetting_config",
    "run_adversarial",
    "run_forgetting",
]
