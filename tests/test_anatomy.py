"""The anatomy graph: node kinds, routes on edges, reachability."""

from __future__ import annotations

import dataclasses

import networkx as nx
import pytest

from emdsim.biology.anatomy import build_anatomy_graph, build_world
from emdsim.config.schema import ConfigError

REQUIRED_ORGANS = {
    "skin",
    "liver",
    "kidney",
    "cns",
    "lymph_nodes",
    "lung_pleura",
    "spleen",
    "gi_tract",
    "breast",
    "muscle_soft_tissue",
}
REQUIRED_MARROW = {
    "cranium",
    "mandible",
    "scapulae",
    "clavicles",
    "sternum",
    "ribs",
    "cervical_vertebrae",
    "thoracic_vertebrae",
    "lumbar_vertebrae",
    "sacrum",
    "pelvis",
    "proximal_femora",
    "proximal_humeri",
}


def test_default_anatomy_has_every_compartment(make_cfg):
    g = build_anatomy_graph(make_cfg().anatomy)
    kinds = nx.get_node_attributes(g, "kind")
    assert REQUIRED_ORGANS <= {n for n, k in kinds.items() if k == "organ"}
    assert REQUIRED_MARROW == {n for n, k in kinds.items() if k == "marrow"}
    assert {f"ps_{m}" for m in REQUIRED_MARROW} == {n for n, k in kinds.items() if k == "paraskeletal"}
    assert sum(k == "blood" for k in kinds.values()) == 1
    assert {n for n, k in kinds.items() if k == "wound"} >= {"catheter_tract", "laparotomy_scar"}


def test_paraskeletal_reached_only_by_local_extension(make_cfg):
    g = build_anatomy_graph(make_cfg().anatomy)
    for n, k in g.nodes(data="kind"):
        if k == "paraskeletal":
            preds = list(g.predecessors(n))
            assert len(preds) == 1 and g.nodes[preds[0]]["kind"] == "marrow"
            assert g.edges[preds[0], n]["route"] == "local"
        if k in ("organ", "wound"):
            assert g.edges["blood", n]["route"] == "haematogenous"
            assert nx.has_path(g, "blood", n)


def test_unreachable_organ_raises(make_cfg):
    an = make_cfg().anatomy
    nodes = [dataclasses.replace(n, share=0.0) if n.name == "liver" else n for n in an.nodes]
    with pytest.raises(ConfigError, match="liver"):
        build_anatomy_graph(dataclasses.replace(an, nodes=nodes))


def test_world_arrays_match_graph(make_cfg):
    w = build_world(make_cfg().anatomy)
    assert w.share[w.is_marrow].sum() == pytest.approx(1.0, abs=0.01)
    assert w.perfusion[w.is_marrow].sum() == pytest.approx(0.03, rel=0.02)
    for i in range(w.n_nodes):
        if w.is_paraskeletal[i]:
            assert w.paraskeletal_of[w.adjacent_marrow[i]] == i
    assert w.barrier[w.index("cns")] < 0.1
    assert w.lesion_death_rate[w.index("cns")] > 0
