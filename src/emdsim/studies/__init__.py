"""Studies: what users run on top of cohorts.

One run and its directory (:mod:`.task`, :mod:`.rundir`), sweeps (:mod:`.sweep`), designs and
sensitivity (:mod:`.design`), in-silico trials (:mod:`.trials`) and the fit (:mod:`.fit`).  Figures
are passed in as callables: nothing here imports the plotting code.
"""
