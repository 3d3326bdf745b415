"""Errors for bad input data, precise enough that a shop can find and fix the offending value.

Every refusal names the source (a file name or a record kind), the line or row, the field and the
value. Checks collect up to `MAX_PROBLEMS` problems before raising, so one run reports a whole
batch of mistakes instead of one per attempt.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

MAX_PROBLEMS = 20

# Index names by which a frame says where its rows came from: "line" for text files (the line a
# person sees in an editor), "row" for Parquet files and in-memory frames (1-based).
LINE_INDEX = "line"
ROW_INDEX = "row"


@dataclass(frozen=True)
class Problem:
    """One refused value: where it is, which field, what it was, and why it was refused."""

    source: str
    line: int | None
    field: str | None
    value: Any
    reason: str
    unit: str = LINE_INDEX

    def __str__(self) -> str:
        where = [self.source]
        if self.line is not None:
            where.append(f"{self.unit} {self.line}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.reason}"


class DataError(ValueError):
    """Input data that cannot be stored; `source`, `line`, `field`, `value` describe the first problem.

    All collected problems are in `problems` (at most `MAX_PROBLEMS`); `total` counts every problem
    found, including those left out of the message.
    """

    def __init__(self, problems: Problem | Sequence[Problem], *, total: int | None = None) -> None:
        found = [problems] if isinstance(problems, Problem) else list(problems)
        if not found:
            raise ValueError("DataError needs at least one problem")
        self.problems: list[Problem] = found
        self.total: int = max(total or 0, len(found))
        first = found[0]
        self.source: str = first.source
        self.line: int | None = first.line
        self.field: str | None = first.field
        self.value: Any = first.value
        super().__init__(self._message())

    def _message(self) -> str:
        if self.total == 1:
            return str(self.problems[0])
        lines = [f"{self.total} problems in the input data:"]
        lines += [f"  {p}" for p in self.problems]
        if self.total > len(self.problems):
            lines.append(f"  ... and {self.total - len(self.problems)} more")
        return "\n".join(lines)


class ProblemLog:
    """Collects problems from several checks so that they are reported together, earliest first.

    Callers may add only the first few problems of a long run and `note` how many they skipped;
    the report then keeps the `limit` earliest by source and line.
    """

    def __init__(self, limit: int = MAX_PROBLEMS) -> None:
        self.limit = limit
        self._problems: list[Problem] = []
        self._skipped = 0

    def add(self, problem: Problem) -> None:
        self._problems.append(problem)

    def extend(self, problems: Iterable[Problem], total: int | None = None) -> None:
        added = list(problems)
        self._problems.extend(added)
        if total is not None:
            self._skipped += max(0, total - len(added))

    def note(self, skipped: int) -> None:
        """Count problems that were found but not recorded individually."""
        self._skipped += skipped

    @property
    def total(self) -> int:
        return len(self._problems) + self._skipped

    def __bool__(self) -> bool:
        return self.total > 0

    def raise_if_any(self) -> None:
        if not self:
            return
        order: dict[str, int] = {}
        for p in self._problems:
            order.setdefault(p.source, len(order))
        ranked = sorted(self._problems, key=lambda p: (order[p.source], p.line is not None, p.line or 0))
        raise DataError(ranked[: self.limit], total=self.total)


def row_locations(frame: Any) -> tuple[list[int], str]:
    """Line (or row) numbers of a frame's rows for error messages.

    Frames read by the importer carry their file's line numbers as an index named "line" (or
    "row" for Parquet); any other frame is numbered by position from 1.
    """
    index = frame.index
    if index.name in (LINE_INDEX, ROW_INDEX):
        return [int(v) for v in index], str(index.name)
    return list(range(1, len(frame) + 1)), ROW_INDEX
