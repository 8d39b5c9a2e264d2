"""The anatomy graph: marrow niches, paraskeletal tissue, blood, organs and wound sites.

The graph is data (``conf/anatomy/*.yaml``); this module turns it into a ``networkx.DiGraph`` with
typed edges and into the arrays the rule functions read (:class:`World`).

Edges and the routes they carry:

* ``marrow -> paraskeletal``: **local** extension through disrupted cortical bone (the only way
  into a paraskeletal compartment);
* ``marrow/paraskeletal/organ/wound -> blood``: egress and shedding;
* ``blood -> marrow/organ/wound``: **haematogenous** arrest, homing and colonisation.

Which route seeded a lesion is the kind of the edge its first cells crossed.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
from numpy.typing import NDArray

from emdsim.config.schema import TISSUE_TARGET_KINDS, AnatomyConfig, check_reachable

__all__ = ["LIGANDS", "ROUTE_LOCAL", "ROUTE_HAEMATOGENOUS", "World", "build_anatomy_graph", "build_world"]

#: ligand columns of :attr:`World.ligands`, in order
LIGANDS: tuple[str, ...] = ("cxcl12", "vcam1", "hyaluronan", "ncam", "selectin", "ccl")
ROUTE_NONE, ROUTE_LOCAL, ROUTE_HAEMATOGENOUS = 0, 1, 2
ROUTE_NAMES = {ROUTE_NONE: "", ROUTE_LOCAL: "local", ROUTE_HAEMATOGENOUS: "haematogenous"}


def build_anatomy_graph(cfg: AnatomyConfig) -> nx.DiGraph:
    """The anatomy as a directed graph; node attributes are the node's config fields.

    Raises:
        ConfigError: if an organ, wound or marrow site cannot be reached from the blood, or a
            paraskeletal compartment has no marrow site beside it.
    """
    g = nx.DiGraph(name=cfg.name)
    blood = next(n.name for n in cfg.nodes if n.kind == "blood")
    for n in cfg.nodes:
        g.add_node(n.name, **{k: v for k, v in vars(n).items() if k != "name"})
    for n in cfg.nodes:
        if n.kind == "paraskeletal":
            g.add_edge(n.adjacent_to, n.name, route="local")
            g.add_edge(n.name, blood, route="shedding")
        elif n.kind == "marrow":
            g.add_edge(n.name, blood, route="egress")
            if n.share > 0:
                g.add_edge(blood, n.name, route="haematogenous")
        elif n.kind in TISSUE_TARGET_KINDS:
            g.add_edge(n.name, blood, route="shedding")
            if n.share > 0 and n.barrier > 0:
                g.add_edge(blood, n.name, route="haematogenous")
    check_reachable(cfg)  # the graph's haematogenous edges are exactly the reachable nodes
    return g


@dataclass(frozen=True)
class World:
    """The anatomy as arrays over nodes (index order = config order)."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    graph: nx.DiGraph
    is_marrow: NDArray[np.bool_]
    is_paraskeletal: NDArray[np.bool_]
    is_tissue_target: NDArray[np.bool_]  # organ or wound: haematogenous EM sites
    is_wound: NDArray[np.bool_]
    blood: int
    share: NDArray[np.float64]  # marrow: marrow share; organ/wound: perfusion share
    perfusion: NDArray[np.float64]  # share of cardiac output reaching the node
    capacity: NDArray[np.float64]  # cells
    ligands: NDArray[np.float64]  # (node, ligand)
    soil: NDArray[np.float64]
    barrier: NDArray[np.float64]
    #: for each paraskeletal node, the index of its marrow site (-1 elsewhere)
    adjacent_marrow: NDArray[np.int64]
    #: for each marrow node, the index of its paraskeletal node (-1 if none)
    paraskeletal_of: NDArray[np.int64]
    #: extra death hazard while a lesion of lethal size is present (1/day)
    lesion_death_rate: NDArray[np.float64]
    #: a lesion this large causes symptoms (cells; 0 = the clinical default)
    symptomatic_cells: NDArray[np.float64]
    #: wound nodes: inflammatory half-life (days)
    wound_half_life: NDArray[np.float64]
    #: compartment kind used by treatment efficacy (wounds count as organ)
    drug_kind: tuple[str, ...]

    @property
    def n_nodes(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def site_label(self, i: int) -> str:
        """Human-readable site of node ``i`` (paraskeletal sites are named after their bone)."""
        return self.names[i]


def build_world(cfg: AnatomyConfig) -> World:
    graph = build_anatomy_graph(cfg)
    nodes = cfg.nodes
    names = tuple(n.name for n in nodes)
    kinds = tuple(n.kind for n in nodes)
    kind_arr = np.array(kinds)
    idx = {n: i for i, n in enumerate(names)}
    adjacent = np.full(len(nodes), -1, dtype=np.int64)
    ps_of = np.full(len(nodes), -1, dtype=np.int64)
    for i, n in enumerate(nodes):
        if n.kind == "paraskeletal":
            adjacent[i] = idx[n.adjacent_to]
            ps_of[idx[n.adjacent_to]] = i
    share = np.array([n.share for n in nodes], dtype=float)
    perfusion = np.where(
        np.array(kinds) == "marrow",
        cfg.red_marrow_perfusion_share * share,
        np.where(np.isin(np.array(kinds), TISSUE_TARGET_KINDS), share, 0.0),
    )
    return World(
        names=names,
        kinds=kinds,
        graph=graph,
        is_marrow=kind_arr == "marrow",
        is_paraskeletal=kind_arr == "paraskeletal",
        is_tissue_target=np.isin(kind_arr, TISSUE_TARGET_KINDS),
        is_wound=kind_arr == "wound",
        blood=kinds.index("blood"),
        share=share,
        perfusion=perfusion,
        capacity=np.array([n.capacity_cells for n in nodes], dtype=float),
        ligands=np.array([[getattr(n, lig) for lig in LIGANDS] for n in nodes], dtype=float),
        soil=np.array([n.soil for n in nodes], dtype=float),
        barrier=np.array([n.barrier for n in nodes], dtype=float),
        adjacent_marrow=adjacent,
        paraskeletal_of=ps_of,
        lesion_death_rate=np.array([n.death_rate_per_day for n in nodes], dtype=float),
        symptomatic_cells=np.array([n.symptomatic_cells for n in nodes], dtype=float),
        wound_half_life=np.array([n.inflammation_half_life_days for n in nodes], dtype=float),
        drug_kind=tuple("organ" if k == "wound" else k for k in kinds),
    )
