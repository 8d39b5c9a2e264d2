"""Figures and animations (matplotlib, object-oriented API: no pyplot state, no display needed).

The simulator never imports this package; it reads what runs wrote to disk.
"""
