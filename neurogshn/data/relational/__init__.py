"""The embedded relational-scenes benchmark: a generator and the diagnostics only it allows.

Generated data sets are ordinary COCO panoptic + captions data sets; what makes them this
benchmark is the manifest ``annotations/scenes.json`` declaring ``"benchmark": "neurogshn
relational scenes"``. Training and scoring never import this package: they read the COCO
files, and the benchmark-only figures (truth oracle, why a first candidate is false) reach
them through :func:`neurogshn.data.diagnostics.diagnostics_for`, which imports
:mod:`.adapter` only for a data set that declares it.

- :mod:`.vocabulary`: the fixed vocabulary (DESIGN.md §4).
- :mod:`.logic`: parse and evaluate statements and questions on a scene.
- :mod:`.captions`: caption content (:class:`~.captions.CaptionSpec`) and hard negatives.
- :mod:`.phrasing`: phrasing families that word the content (per split).
- :mod:`.scenes`: the deterministic scene generator (:func:`~.scenes.generate_scenes`).
- :mod:`.taskgen`: VQA, visual entailment and NLVR2-style task files.
- :mod:`.facts`: scene facts rebuilt from a data set's files.
- :mod:`.adapter`: the diagnostics of a generated data set
  (:class:`~.adapter.RelationalDiagnostics`).

Nothing is imported eagerly here, so importing a submodule stays cheap.
"""
