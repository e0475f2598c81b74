"""The paper's two applications, measured: SVM support-vector replay against catastrophic forgetting
(:mod:`~nnboundary.applications.forgetting`) and margin-guided adversarial attacks
(:mod:`~nnboundary.applications.adversarial`).

Both are hypotheses from the paper's discussion (§6); these modules run them as experiments and report what
they measure. Their experiments are registered like every other kind (``list_experiments(kind="forgetting")``,
``get_experiment(name, profile).settings``) with ``smoke``/``quick``/``paper`` profiles; :func:`run_forgetting`
and :func:`run_adversarial` run them.
"""

from nnboundary.applications.adversarial import run_adversarial
from nnboundary.applications.forgetting import run_forgetting

__all__ = [
    "run_adversarial",
    "run_forgetting",
]
