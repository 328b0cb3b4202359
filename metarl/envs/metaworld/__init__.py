"""Meta-World (Yu et al. 2019; ``metaworld`` 3.1.1) as metarl task distributions (extra ``metarl[metaworld]``).

* ``MetaRL/MW-ML1-<env-name>-v0`` (50 ids, e.g. ``MetaRL/MW-ML1-reach-v3-v0``): one manipulation task family,
  50 training goals and 50 held-out goals;
* ``MetaRL/MW-ML10-v0``, ``MetaRL/MW-ML45-v0``: train on 10 / 45 families, meta-test on 5 unseen ones.

A task is a :class:`~metarl.envs.metaworld.tasks.MetaWorldTask` (family, split, goal variant and Meta-World's
goal vector). ``sample_tasks`` draws from the training set; ``sample_held_out_tasks`` (what ``metarl evaluate``
uses) from the test set, exactly as Meta-World's benchmark objects define them. The modules that need the
``metaworld`` package (:mod:`.env`, :mod:`.engine`) are imported only when an env is made, so ``import metarl``
works without it; making an env without it raises a one-line :class:`~metarl.errors.UserError`.
"""
