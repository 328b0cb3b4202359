"""Reference algorithms of Duan et al. 2016 ("RL^2"), Tables 1 and 2: bandit and tabular-MDP baselines to set
RL^2's results against. Numpy only; every policy runs over many tasks at once on the envs' batched engines."""

from metarl.agents.references.bandits import (
    UCB1,
    BanditPolicy,
    EpsilonGreedy,
    Gittins,
    RandomArm,
    Thompson,
    run_bandit,
)
from metarl.agents.references.gittins import gittins_indices
from metarl.agents.references.tabular import (
    BEB,
    UCRL2,
    CertaintyEquivalent,
    MDPPolicy,
    PosteriorSampling,
    TabularPosterior,
    run_mdp,
    value_iteration,
)

__all__ = [
    "BEB",
    "UCB1",
    "UCRL2",
    "CertaintyEquivalent",
    "MDPPolicy",
    "PosteriorSampling",
    "TabularPosterior",
    "run_mdp",
    "value_iteration",
    "BanditPolicy",
    "EpsilonGreedy",
    "Gittins",
    "RandomArm",
    "Thompson",
    "gittins_indices",
    "run_bandit",
]
