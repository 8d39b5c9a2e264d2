"""The commands: the only layer that composes Hydra configurations from the command line, prints
and exits.  ``emdsim`` (:mod:`.main`, with Hydra's callbacks in :mod:`.callbacks`), ``emdsim-design``
(:mod:`.design`), ``emdsim-fit`` (:mod:`.fit`), ``emdsim-trial`` (:mod:`.trial`), ``emdsim-report``
(:mod:`.report`), ``emdsim-animate`` (:mod:`.animate`), ``emdsim-app`` (:mod:`.dashboard`, the only
module that imports Solara); ``python -m emdsim.cli.paramdoc`` writes docs/parameters.md; :mod:`.args` is their shared
parser (help with examples and outputs, ``--version``, one-line errors)."""
