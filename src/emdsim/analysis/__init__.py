"""Analysis: what a cohort's tables say, as pure pandas.

:mod:`.summary` (the run's headline numbers), :mod:`.survival` (incidence with intervals, sites,
cumulative incidence, Kaplan-Meier and Cox: lifelines, imported only there) and :mod:`.targets` (the
reported clinical figures and their sources)."""
