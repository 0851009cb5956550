"""A criterion of a host control: met, not met or unknown, with the lines that decided it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Line:
    where: str  #: "file:line", or "`command` line N"
    text: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text.strip()}"


@dataclass
class Criterion:
    name: str
    holds: bool | None
    detail: str
    lines: list[Line] = field(default_factory=list)

    def describe(self) -> str:
        mark = {True: "met", False: "NOT met", None: "unknown"}[self.holds]
        decided = "; ".join(str(x) for x in self.lines[:4])
        return f"{self.name}: {mark}: {self.detail}" + (f" [{decided}]" if decided else "")


def any_of(name: str, routes: list[Criterion]) -> Criterion:
    """Met when one route is met (its detail and lines decide); otherwise unknown when one
    route is unknown, else not met; then every route's detail and lines are shown."""
    met = [r for r in routes if r.holds]
    if met:
        return Criterion(name, True, met[0].detail, met[0].lines)
    holds = None if any(r.holds is None for r in routes) else False
    detail = "; ".join(f"{r.name}: {r.detail}" for r in routes)
    return Criterion(name, holds, detail, [x for r in routes for x in r.lines])
