"""Biology: the model's rules, as pure functions of arrays and the configuration.

The anatomy graph (:mod:`.anatomy`), clone traits and phenotype switches (:mod:`.traits`), virtual
patients and their genomic risk (:mod:`.patients`), niche support, growth and egress (:mod:`.niches`),
local and haematogenous spread (:mod:`.spread`) and drug kill (:mod:`.treatment`).  Nothing here
draws a random number or keeps state; the engine calls these rules, numpy code calls them on arrays
and the compiled loops call the same source compiled for scalars.
"""
