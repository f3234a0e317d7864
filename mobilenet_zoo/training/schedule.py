"""A recipe's training defaults per kind of data, and the plan resolved from them.

TensorFlow-free (the recipes state their ``Schedules`` before parsing flags, so
``--help`` prints them). Each default is stated once: in a recipe's
``Schedules`` for the training loop, in the model builder for the model (a
``None`` flag means "the builder's default"). A flag given on the command line
always wins; an unset one takes the value of the data kind the run got
(``DataChoice.kind``: the full dataset, the embedded set, or ``--smoke`` mock data).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: The kinds of data a recipe can get (``DataChoice.kind``) and the schedule each uses.
DATA_KINDS = ("full", "embedded", "mock")


@dataclass(frozen=True)
class Schedule:
    """Training defaults on one kind of data.

    ``steps_per_epoch`` None: one pass over the training split (a fixed number of
    steps over a repeated dataset keeps one iterator for the whole run).
    ``eval_batch`` None: ``batch_size``. ``image_size`` None: the model builder's.
    ``freeze_until``: the backbone level frozen when it starts from pretrained
    weights (``"none"``: nothing frozen). ``model``: builder keyword arguments on
    this data (e.g. a smaller second-stage batch on the embedded set).
    """

    epochs: int
    batch_size: int
    learning_rate: float
    steps_per_epoch: int | None = None
    eval_batch: int | None = None
    image_size: int | None = None
    freeze_until: str = "none"
    model: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Schedules:
    """A recipe's ``Schedule`` for each data kind."""

    full: Schedule
    embedded: Schedule
    smoke: Schedule

    def of(self, kind: str) -> Schedule:
        if kind not in DATA_KINDS:
            raise ValueError(f"`kind` must be one of {DATA_KINDS}, got {kind!r}.")
        return {"full": self.full, "embedded": self.embedded, "mock": self.smoke}[kind]

    def help(self, name: str, what: str = "") -> str:
        """``what (default: X; Y on the embedded set; Z with --smoke)`` for field ``name``."""
        full, embedded, smoke = (getattr(s, name) for s in (self.full, self.embedded, self.smoke))
        text = f"default: {_show(full)}"
        if embedded != full:
            text += f"; {_show(embedded)} on the embedded set"
        if smoke != embedded:
            text += f"; {_show(smoke)} with --smoke"
        return f"{what} ({text})" if what else f"({text})"


def _show(value: Any) -> str:
    return "one pass over the data" if value is None else str(value)


@dataclass(frozen=True)
class TrainFlags:
    """The training-loop flags as given (None: not given, the schedule decides)."""

    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    steps_per_epoch: int | None = None
    image_size: int | None = None
    freeze_until: str | None = None


@dataclass(frozen=True)
class Plan:
    """What a run does, every value resolved (recorded in ``results.json``)."""

    epochs: int
    batch_size: int
    learning_rate: float
    steps_per_epoch: int | None
    eval_batch: int
    image_size: int | None
    freeze_until: str
    model: dict[str, Any]


def resolve(schedule: Schedule, given: TrainFlags, num_examples: int | None = None,
            pretrained: bool = True) -> Plan:
    """The plan of a run: each flag given, else ``schedule``'s value. Without a
    ``steps_per_epoch`` anywhere, one pass over ``num_examples`` (None when unknown).
    The schedule's ``freeze_until`` applies to ``pretrained`` backbones only."""
    def pick(name):
        value = getattr(given, name)
        return getattr(schedule, name) if value is None else value

    batch = pick("batch_size")
    steps = pick("steps_per_epoch") or (max(1, (num_examples or 0) // batch) if num_examples else None)
    freeze = given.freeze_until or (schedule.freeze_until if pretrained else "none")
    return Plan(epochs=pick("epochs"), batch_size=batch, learning_rate=pick("learning_rate"),
                steps_per_epoch=steps, eval_batch=schedule.eval_batch or batch,
                image_size=pick("image_size"), freeze_until=freeze, model=dict(schedule.model))


def as_dict(plan: Plan) -> dict[str, Any]:
    return dataclasses.asdict(plan)
