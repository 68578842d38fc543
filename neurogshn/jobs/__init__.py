"""The jobs the command line runs, composed from the engine below them: a pretraining run
(embedded data made if asked, training, retrieval evaluation before and after, summary) and a
recipe (a chain of such runs, each resuming where it stopped, then a retrieval evaluation).

- :mod:`~neurogshn.jobs.pretrain`: :func:`run_pretraining` (``neurogshn pretrain``,
  examples/pretrain_stl.py)
- :mod:`~neurogshn.jobs.recipe`: :func:`run_recipe` (``neurogshn recipe``)

They sit above :mod:`neurogshn.training` (the engine) and :mod:`neurogshn.tasks` (evaluation),
which never import each other.
"""
