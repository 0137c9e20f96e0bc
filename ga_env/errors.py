"""Errors raised for bad user input: they name the file, the field and the fix."""

from __future__ import annotations

from os import PathLike


class TownDataError(ValueError):
    """A map, persona or group file (or an env argument) is invalid.

    The message always has the shape ``<source>: <field>: <problem>. Fix: <fix>``
    so a user can find and repair the input without reading a traceback.

    Attributes:
        source: The file (or ``"argument"``) the bad value came from.
        field: The field, key or tile at fault.
        problem: What is wrong.
        fix: How to repair it.
    """

    def __init__(self, source: str | PathLike[str], field: str, problem: str, fix: str) -> None:
        self.source = str(source)
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.source}: {field}: {problem}. Fix: {fix}")


class ActionError(ValueError):
    """An action passed to ``step()`` is invalid.

    The message has the shape ``actions[<agent>]: <field>: <problem>. Fix: <fix>``.

    Attributes:
        agent: The agent whose action is at fault (``"*"`` for the whole dict).
        field: ``action``, ``target``, ``partner``, ``utterance`` or ``keys``.
        problem: What is wrong.
        fix: How to repair it.
    """

    def __init__(self, agent: str, field: str, problem: str, fix: str) -> None:
        self.agent = agent
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"actions[{agent!r}]: {field}: {problem}. Fix: {fix}")
