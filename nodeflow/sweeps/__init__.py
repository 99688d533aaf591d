"""Parameter sweeps: many runs of one workflow with some literal inputs varied.

``spec`` parses ``--sweep NODE.INPUT=VALUES`` into a ``SweepSpec`` (values checked by the input's
type before anything runs); ``jobs`` expands it into jobs ordered for cache hits (``seeds`` gives
``--repeat`` the editor's seed behaviour); ``run`` runs them on one executor; ``manifest`` records
every job (``--resume``); ``grid`` draws the X/Y grids. Jobs and results are plain data, so another
backend (a cluster) can run the same job list and hand back the same records: ``ray_backend``
(``--ray``) runs them on Ray actors (``ray_worker``), placed by ``schedule``, their files coming
back through ``transfer``; Ray is imported only there, and only when a sweep asks for it.
"""
