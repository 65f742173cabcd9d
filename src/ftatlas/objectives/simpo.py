"""SimPO: simple preference optimisation, reference-free, length-normalised rewards with a target margin.

TRL implements it as CPOTrainer's ``simpo`` loss; pure SimPO has no NLL term (``cpo_alpha: 0``), and
``beta`` is much larger than DPO's (the paper uses 2.0-2.5 with gamma/beta around 0.5).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ftatlas.objectives.base import OBJECTIVES
from ftatlas.objectives.cpo import CPO, CPOParams


class SimPOParams(CPOParams):
    loss: Literal["simpo"] = Field("simpo", description="fixed: SimPO")
    beta: float = Field(2.0, gt=0, description="reward scale (SimPO paper: 2.0-2.5)")
    simpo_gamma: float = Field(1.0, ge=0, description="target reward margin gamma (paper: gamma/beta ~ 0.5)")
    cpo_alpha: float = Field(0.0, ge=0, description="NLL weight on chosen; 0 = pure SimPO (>0 = CPO-SimPO)")


@OBJECTIVES.register("simpo")
class SimPO(CPO):
    summary = "SimPO: reference-free, length-normalised preference loss with a target margin (TRL CPO 'simpo')"
    Params = SimPOParams
