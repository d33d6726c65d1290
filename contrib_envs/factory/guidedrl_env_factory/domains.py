"""The four shop floors: one simulator, four parameter sets.

Every domain has the same agent interface (for a given number of agents: the same observation and
action shapes, the same meaning of every feature and action), so a policy trained on one floor can be
run zero-shot on another. What differs is the physics behind the features: who works where how fast,
how fast equipment wears, how tiring the work is and how fast jobs arrive.
"""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class Domain:
    """Parameters of one shop floor."""

    name: str
    """Short name (``human-machine``, ``maintenance``, ``warehouse``, ``manufacturing``)."""
    title: str
    """What the floor is, in a sentence (heads every description)."""
    human_word: str = "human worker"
    robot_word: str = "robot"
    station_word: str = "station"
    manual_word: str = "manual"
    auto_word: str = "automated"
    human_frac: float = 0.5
    """Fraction of agents that are humans (the rest are robots); humans come first."""
    manual_frac: float = 0.5
    """Fraction of stations that are manual (the rest automated); manual ones come first."""
    eff: tuple[tuple[float, float], tuple[float, float]] = ((0.5, 0.2), (0.1, 0.5))
    """Jobs per step: ``eff[agent_kind][station_kind]`` (kind 0 = human / manual, 1 = robot / automated)."""
    arrival: float = 0.25
    """Probability per step that a job arrives at each station."""
    init_queue: int = 3
    """Jobs waiting at each station at reset are drawn from ``0..init_queue``."""
    max_queue: float = 10.0
    """Queue capacity per station; jobs arriving at a full queue are lost (still count as arrived)."""
    wear: float = 0.01
    """Health lost per step of production."""
    wear_noise: float = 0.5
    """Relative noise on the wear (uniform in ``wear * (1 ± wear_noise)``)."""
    hazard: float = 0.0
    """Extra chance per step that a producing station below 30% health breaks outright."""
    repair: float = 0.34
    """Health regained per step of maintenance (times the agent's repair skill)."""
    repair_skill: tuple[float, float] = (1.0, 0.5)
    """Repair skill of a human and of a robot."""
    fatigue_work: float = 0.06
    """Fatigue a human gains per step of work or maintenance (travel: half of it)."""
    fatigue_rest: float = 0.15
    """Fatigue a human loses per step of rest."""
    fatigue_slowdown: float = 0.5
    """A human's output is multiplied by ``1 - fatigue_slowdown * fatigue``."""
    job_reward: float = 1.0
    conflict_penalty: float = 0.5
    """Per agent blocked from equipment another agent uses or claims first (a conflict)."""
    overwork_penalty: float = 0.5
    """Per step a human spends exhausted (fatigue at 1) away from the rest area."""
    breakdown_penalty: float = 0.05
    """Per broken station per step (downtime)."""
    horizon: int = 100
    """Steps per episode (then every agent is truncated)."""


DOMAINS: dict[str, Domain] = {
    "human-machine": Domain(
        name="human-machine",
        title="Human-machine collaboration cell: human workers and robots share manual and automated stations.",
    ),
    "maintenance": Domain(
        name="maintenance",
        title="Fatigue-aware maintenance shop: crews keep fast-wearing machines running while producing.",
        human_word="crew",
        robot_word="maintenance robot",
        station_word="machine",
        human_frac=0.75,
        manual_frac=0.5,
        eff=((0.45, 0.3), (0.15, 0.45)),
        arrival=0.22,
        wear=0.045,
        hazard=0.08,
        repair=0.3,
        repair_skill=(1.0, 0.6),
        fatigue_work=0.07,
        fatigue_rest=0.15,
        breakdown_penalty=0.1,
    ),
    "warehouse": Domain(
        name="warehouse",
        title="Warehouse: human pickers and AGVs serve manual picking zones and automated shelving zones.",
        human_word="picker",
        robot_word="AGV",
        station_word="zone",
        manual_word="picking",
        auto_word="shelving",
        eff=((0.55, 0.15), (0.1, 0.6)),
        arrival=0.28,
        wear=0.006,
        repair=0.4,
        fatigue_work=0.05,
        fatigue_rest=0.18,
    ),
    "manufacturing": Domain(
        name="manufacturing",
        title="Manufacturing line: operators and welding robots run assembly and machining cells.",
        human_word="operator",
        robot_word="welding robot",
        station_word="cell",
        manual_word="assembly",
        auto_word="machining",
        eff=((0.45, 0.25), (0.15, 0.55)),
        arrival=0.24,
        wear=0.02,
        hazard=0.03,
        repair=0.3,
        fatigue_work=0.065,
        fatigue_rest=0.14,
    ),
}
