"""Directions and ranges of the biological rule functions."""

from __future__ import annotations

import numpy as np
import pytest

from emdsim.biology.anatomy import build_world
from emdsim.biology.niches import adhesion, birth_rate, death_rate, egress_rate, occupancy, support
from emdsim.biology.spread import colonisation_probability, disruption_rate, focal_breach_rate, homing_weights
from emdsim.biology.traits import TRAIT_INDEX, clone_trait_table, switch_targets
from emdsim.biology.treatment import regimen_kill_table

T = TRAIT_INDEX


def _traits(**levels):
    """Trait vector (T,) of a founder-like clone, with some levels changed."""
    t = np.ones(len(T))
    for name, v in levels.items():
        t[T[name]] = v
    return t


def test_support_bounds_and_direction():
    d = np.linspace(0, 1, 11)
    soil = np.array([0.0, 0.3, 1.0])
    s = support(d[None, :], soil[:, None])
    assert s.shape == (3, 11)
    assert np.all((s >= 0) & (s <= 1))
    assert np.allclose(s[2], 1.0)  # marrow soil supports every clone
    assert np.allclose(s[:, 0], 1.0)  # a niche-independent clone grows anywhere
    assert np.all(np.diff(s[0]) < 0)  # more dependence, less support in poor soil


def test_birth_falls_with_occupancy_and_death_rises_without_support():
    occ = np.array([[0.0, 0.5, 1.0, 1.2]])
    b = birth_rate(0.015, np.ones(4), occ[0], np.ones(4))
    assert b[0] > b[1] > 0 and np.all(b[2:] == 0.0)  # none at or over capacity
    d = death_rate(0.006, 0.05, np.array([1.0, 0.5, 0.0]))
    assert np.all(np.diff(d) > 0) and d[0] == pytest.approx(0.006)


def test_occupancy_zero_capacity_is_zero():
    assert occupancy(np.array([5.0, 5.0]), np.array([0.0, 10.0])).tolist() == [0.0, 0.5]


@pytest.mark.parametrize("trait", ["cxcr4", "cd56", "vla4", "cd44", "tetraspanin"])
def test_losing_an_adhesion_trait_raises_marrow_egress(make_cfg, trait):
    cfg = make_cfg()
    world = build_world(cfg.anatomy)
    marrow = np.flatnonzero(world.is_marrow)
    high = adhesion(_traits(), world.ligands[marrow], cfg.spread)
    low = adhesion(_traits(**{trait: 0.2}), world.ligands[marrow], cfg.spread)
    assert high.shape == (marrow.size,) and np.all(low < high)
    occ = np.full(marrow.size, 0.3)
    assert np.all(egress_rate(0.02, low, occ, 2.0) > egress_rate(0.02, high, occ, 2.0))


def test_crowding_raises_egress():
    base = np.array([0.02])
    rates = [float(egress_rate(base, 3.0, o, 2.0)[0]) for o in (0.0, 0.5, 1.0)]
    assert rates[0] < rates[1] < rates[2]


def test_low_cxcr4_homes_less_to_marrow_and_ccr_favours_organs(make_cfg):
    cfg = make_cfg()
    w = build_world(cfg.anatomy)

    def marrow_share(**lv):
        h = homing_weights(_traits(**lv), w.ligands, w.perfusion, w.barrier, cfg.spread)
        return h[w.is_marrow].sum() / h.sum()

    assert marrow_share(cxcr4=0.2) < marrow_share()
    assert marrow_share(ccr=3.0) < marrow_share()
    h = homing_weights(_traits(), w.ligands, w.perfusion, w.barrier, cfg.spread)
    assert h.shape == (w.n_nodes,) and np.all(h >= 0) and h[w.blood] == 0 and np.all(h[w.is_paraskeletal] == 0)


def test_cns_barrier_reduces_homing(make_cfg):
    cfg = make_cfg()
    w = build_world(cfg.anatomy)
    cns = w.index("cns")
    open_barrier = w.barrier.copy()
    open_barrier[cns] = 1.0
    closed = homing_weights(_traits(), w.ligands, w.perfusion, w.barrier, cfg.spread)[cns]
    opened = homing_weights(_traits(), w.ligands, w.perfusion, open_barrier, cfg.spread)[cns]
    assert closed < opened


def test_disruption_only_above_threshold():
    occ = np.array([0.0, 0.19, 0.2, 0.21, 0.6, 1.0])
    hz = disruption_rate(occ, 0.2, 0.001)
    assert np.all(hz[:3] == 0) and np.all(np.diff(hz[2:]) > 0)


def test_focal_breach_is_zero_up_to_the_focal_size_then_linear_in_the_excess():
    resistant = np.array([0.0, 5e9, 1e10, 2e10, 4e10])
    hz = focal_breach_rate(resistant, 1e10, 0.001)
    assert np.all(hz[:3] == 0.0)
    assert hz[3:] == pytest.approx([0.001, 0.003])  # 1 and 3 focal sizes of excess
    assert np.all(focal_breach_rate(resistant, 1e10, 0.0) == 0.0)  # rate 0 switches the rule off


def test_colonisation_probability_bounds():
    s = np.linspace(0, 1, 5)
    p = colonisation_probability(0.5, s)
    assert np.all((p >= 0) & (p <= 1)) and np.all(np.diff(p) > 0)
    assert colonisation_probability(3.0, np.array([1.0]))[0] == 1.0


def test_switch_lattice_and_trait_table(make_cfg):
    cfg = make_cfg()
    sw = cfg.traits.switches
    src, tgt = switch_targets(len(sw))
    assert src.shape == (len(sw), 2 ** (len(sw) - 1))
    assert np.all(tgt == src | (1 << np.arange(len(sw))[:, None]))
    base = np.ones((2, len(T)))
    table = clone_trait_table(base, sw)
    cd56_loss = 1 << [s.name for s in sw].index("cd56_loss")
    assert np.all(table[:, cd56_loss, T["cd56"]] == 0) and np.all(table[:, 0, T["cd56"]] == 1)
    assert np.all((table[..., T["niche_dependence"]] >= 0) & (table[..., T["niche_dependence"]] <= 1))


def test_thalidomide_spares_organs_bortezomib_does_not(make_cfg):
    cfg = make_cfg()
    w = build_world(cfg.anatomy)
    from emdsim.config.schema import RegimenSpec

    regs = [RegimenSpec("t", ["thalidomide"], 1), RegimenSpec("v", ["bortezomib"], 1)]
    k = regimen_kill_table(regs, cfg.drugs, w.drug_kind)
    organ = w.index("liver")
    marrow = w.index("pelvis")
    assert k[0, organ] == 0.0 and k[0, marrow] > 0
    assert k[1, organ] > 0
    assert np.all(k[-1] == 0)  # the untreated row


def test_a_phase_given_less_densely_kills_in_proportion(make_cfg):
    """dose_intensity scales the whole regimen's hazard in every compartment (weekly bortezomib)."""
    cfg = make_cfg()
    w = build_world(cfg.anatomy)
    from emdsim.config.schema import RegimenSpec

    drugs = ["bortezomib", "melphalan_prednisone"]
    full, weekly = RegimenSpec("vmp", drugs, 1), RegimenSpec("vmp", drugs, 1, dose_intensity=0.66)
    k = regimen_kill_table([full, weekly], cfg.drugs, w.drug_kind)
    np.testing.assert_allclose(k[1], 0.66 * k[0], rtol=1e-12)
    assert k[0].min() > 0
