"""A patient's course status: the codes the state arrays and the compiled clinical course share."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Status"]


class Status(IntEnum):
    """A patient's course: ordered, so ``status <= FOLLOWED`` means still living and followed."""

    UNDIAGNOSED = 0
    FOLLOWED = 1
    DEAD = 2
    CENSORED = 3
