"""Personas and groups as data.

A *persona* is a resident of the town (Park et al. 2023's identity stable set:
name, age, innate, learned, currently, lifestyle, living area) plus the RL
attributes ``group`` and ``task``. A *group* is a YAML file: its cause, its
objective (reward terms and weights), its task, research and social sites, and
the individual/team share of its reward. A new group with a new objective is a
new YAML file; no code changes.

A persona may also carry its own attention (the original's ``vision_r``, ``att_bandwidth`` and
``retention`` in its scratch): ``vision_radius`` (tiles it sees), ``att_bandwidth`` (events it
perceives per step) and ``retention`` (latest event memories it checks before storing a repeat).
Each is optional; a persona without one uses the cognition config's value (``agent.bandwidth``,
``agent.retention``, ``agent.vision_radius``, the last defaulting to ``Dynamics.vision_radius``).
They steer the generative mind's perceive step only, not the env's dynamics.

Objective terms (per step, computed by the env, see ``ga_env.town``):

=================  ============================================================
``awareness``      awareness of the group's cause gained by non-members (chat)
``supporters``     non-members whose awareness crossed the supporter threshold
``knowledge``      knowledge produced by research at the group's research sites
``task_progress``  work done at the group's (or the persona's) task sites
``relationships``  growth of the persona's relationships (chat)
``conversations``  conversations held
``rest``           energy recovered by resting at home
=================  ============================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ga_env.errors import TownDataError
from ga_env.maps import _read_yaml

OBJECTIVE_TERMS: tuple[str, ...] = (
    "awareness",
    "supporters",
    "knowledge",
    "task_progress",
    "relationships",
    "conversations",
    "rest",
)
PERSONA_TEXT_FIELDS: tuple[str, ...] = ("innate", "learned", "currently", "lifestyle", "task")
ATTENTION_FIELDS: dict[str, int] = {"vision_radius": 0, "att_bandwidth": 1, "retention": 1}
"""The optional per-persona attention settings and the least value each accepts."""


@dataclass(frozen=True, kw_only=True)
class Persona:
    """One resident of the town (immutable data, validated on construction)."""

    name: str
    age: int
    innate: str
    learned: str
    currently: str
    lifestyle: str
    living_area: str
    group: str
    task: str
    task_site: str | None = None
    spawn: tuple[int, int] | None = None
    vision_radius: int | None = None
    """Tiles the persona sees (None = the cognition config's, else ``Dynamics.vision_radius``)."""
    att_bandwidth: int | None = None
    """Events the persona perceives per step (None = the cognition config's ``bandwidth``)."""
    retention: int | None = None
    """Latest event memories checked for repeats (None = the cognition config's ``retention``)."""
    source: str = "argument"

    def __post_init__(self) -> None:
        where = f"persona {self.name!r}"
        if not isinstance(self.name, str) or not self.name.strip():
            raise TownDataError(self.source, "name", "must be a non-empty string", "give every persona a name")
        if isinstance(self.age, bool) or not isinstance(self.age, int) or not 0 <= self.age <= 150:
            raise TownDataError(
                self.source, f"{where}.age", f"{self.age!r} is not an age", "give an integer between 0 and 150"
            )
        for key in (*PERSONA_TEXT_FIELDS, "living_area", "group"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value.strip():
                raise TownDataError(
                    self.source,
                    f"{where}.{key}",
                    f"must be a non-empty string, got {value!r}",
                    f"write the persona's {key}",
                )
        if self.task_site is not None and (not isinstance(self.task_site, str) or not self.task_site.strip()):
            raise TownDataError(
                self.source,
                f"{where}.task_site",
                f"must be a place address, got {self.task_site!r}",
                'write e.g. task_site: "Willow Cafe:kitchen" or leave it out',
            )
        if self.spawn is not None and (
            len(self.spawn) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in self.spawn)
        ):
            raise TownDataError(
                self.source, f"{where}.spawn", f"{self.spawn!r} is not a tile", "write spawn: [x, y] with integers"
            )
        for key, least in ATTENTION_FIELDS.items():
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
                raise TownDataError(
                    self.source,
                    f"{where}.{key}",
                    f"{value!r} is not an integer >= {least}",
                    f"write e.g. {key}: {max(least, 3)}, or leave it out to use the default",
                )

    @property
    def agent_id(self) -> str:
        """The PettingZoo agent name: the persona's name in snake case."""
        return "_".join(self.name.lower().split())

    @property
    def first_name(self) -> str:
        return self.name.split()[0]


@dataclass(frozen=True, kw_only=True)
class Group:
    """A group of personas sharing an objective (immutable, validated)."""

    name: str
    description: str
    cause: str | None
    objective: Mapping[str, float]
    individual_share: float
    task_sites: tuple[str, ...]
    research_sites: tuple[str, ...] = ()
    social_sites: tuple[str, ...] = ()
    source: str = "argument"

    def __post_init__(self) -> None:
        src = self.source
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise TownDataError(
                src,
                "name",
                f"{self.name!r} is not a simple identifier",
                "use letters, digits and underscores, e.g. name: artist_collective",
            )
        if self.cause is not None and (not isinstance(self.cause, str) or not self.cause.strip()):
            raise TownDataError(
                src, "cause", "must be a sentence or null", "describe the group's cause, or write cause: null"
            )
        if not isinstance(self.objective, Mapping) or not self.objective:
            raise TownDataError(
                src,
                "objective",
                "must be a non-empty mapping of term -> weight",
                f"use terms from {', '.join(OBJECTIVE_TERMS)}",
            )
        for term, weight in self.objective.items():
            if term not in OBJECTIVE_TERMS:
                raise TownDataError(
                    src, f"objective.{term}", "is not a known reward term", f"use one of {', '.join(OBJECTIVE_TERMS)}"
                )
            if (
                isinstance(weight, bool)
                or not isinstance(weight, (int, float))
                or weight != weight
                or abs(weight) > 1e6
            ):
                raise TownDataError(
                    src, f"objective.{term}", f"weight {weight!r} is not a finite number", "give a number such as 1.0"
                )
        if self.cause is None and any(t in self.objective for t in ("awareness", "supporters")):
            raise TownDataError(
                src,
                "objective",
                "awareness/supporters terms need a cause",
                "give the group a cause or drop those terms",
            )
        s = self.individual_share
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 <= s <= 1.0:
            raise TownDataError(
                src,
                "individual_share",
                f"{s!r} is not in [0, 1]",
                "give a number between 0 (all team) and 1 (all individual)",
            )
        if not self.task_sites:
            raise TownDataError(
                src, "task_sites", "must list at least one place", 'list places such as ["Cafe:dining area"]'
            )
        for key in ("task_sites", "research_sites", "social_sites"):
            for site in getattr(self, key):
                if not isinstance(site, str) or not site.strip():
                    raise TownDataError(src, key, f"{site!r} is not a place address", 'write places as "Sector:arena"')


def _as_str_tuple(value: Any, path: Path, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TownDataError(
            path, key, f"must be a list of places, got {type(value).__name__}", f'write {key}: ["Sector:arena", ...]'
        )
    return tuple(value)


def _key(key: Any) -> str:
    """A YAML key as shown in an error: plain if it is a readable name, else its repr."""
    return key if isinstance(key, str) and key.strip() and key.isprintable() else repr(key)


def load_group(path: str | Path) -> Group:
    """Load one group YAML file.

    Raises:
        TownDataError: naming the file, the field and the fix.
    """
    path = Path(path)
    doc = _read_yaml(path)
    if not isinstance(doc, dict):
        raise TownDataError(
            path,
            "document",
            "is empty or not a mapping",
            "write the keys name, cause, objective, individual_share and task_sites",
        )
    known = {
        "name",
        "description",
        "cause",
        "objective",
        "individual_share",
        "task_sites",
        "research_sites",
        "social_sites",
    }
    for key in doc:
        if key not in known:
            raise TownDataError(path, _key(key), "is not a group field", f"use only {', '.join(sorted(known))}")
    for key in ("name", "objective", "task_sites"):
        if key not in doc:
            raise TownDataError(
                path, key, "is missing", f"add {key} (see ga_env/data/willowbrook/groups/ for examples)"
            )
    if doc["name"] != path.stem:
        raise TownDataError(
            path,
            "name",
            f"{doc['name']!r} differs from the file name {path.stem!r}",
            f"name the file {doc['name']}.yaml or set name: {path.stem}",
        )
    return Group(
        name=doc["name"],
        description=str(doc.get("description") or ""),
        cause=doc.get("cause"),
        objective=dict(doc["objective"]) if isinstance(doc["objective"], dict) else doc["objective"],
        individual_share=doc.get("individual_share", 0.5),
        task_sites=_as_str_tuple(doc.get("task_sites"), path, "task_sites"),
        research_sites=_as_str_tuple(doc.get("research_sites"), path, "research_sites"),
        social_sites=_as_str_tuple(doc.get("social_sites"), path, "social_sites"),
        source=str(path),
    )


def load_groups(folder: str | Path) -> dict[str, Group]:
    """Load every ``*.yaml`` group file of a folder, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TownDataError(folder, "groups", "is not a folder", "give a folder of group YAML files")
    groups = {g.name: g for g in (load_group(p) for p in sorted(folder.glob("*.yaml")))}
    if not groups:
        raise TownDataError(folder, "groups", "holds no *.yaml group file", "add at least one group file")
    return groups


def load_personas(path: str | Path) -> tuple[Persona, ...]:
    """Load a personas YAML file (a mapping with a ``personas`` list).

    Raises:
        TownDataError: naming the file, the persona and field, and the fix.
    """
    path = Path(path)
    doc = _read_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("personas"), list) or not doc["personas"]:
        raise TownDataError(
            path, "personas", "must be a non-empty list", "write personas: followed by a list of persona mappings"
        )
    required = ("name", "age", *PERSONA_TEXT_FIELDS, "living_area", "group")
    optional = ("task_site", "spawn", *ATTENTION_FIELDS)
    out: list[Persona] = []
    seen: set[str] = set()
    for i, entry in enumerate(doc["personas"]):
        if not isinstance(entry, dict):
            raise TownDataError(path, f"personas[{i}]", "is not a mapping", "write each persona as key: value lines")
        label = f"personas[{i}] ({entry.get('name', '?')!r})"
        for key in required:
            if key not in entry:
                raise TownDataError(path, f"{label}.{key}", "is missing", f"add {key}: to the persona")
        for key in entry:
            if key not in required and key not in optional:
                raise TownDataError(
                    path, f"{label}.{_key(key)}", "is not a persona field", f"use only {', '.join(required + optional)}"
                )
        spawn = entry.get("spawn")
        if spawn is not None:
            if not isinstance(spawn, list) or len(spawn) != 2:
                raise TownDataError(path, f"{label}.spawn", f"{spawn!r} is not a tile", "write spawn: [x, y]")
            spawn = (spawn[0], spawn[1])
        if not isinstance(entry["name"], str):
            raise TownDataError(path, f"{label}.name", "must be a string", "quote the name")
        persona = Persona(
            name=entry["name"],
            age=entry["age"],
            innate=entry["innate"],
            learned=entry["learned"],
            currently=entry["currently"],
            lifestyle=entry["lifestyle"],
            living_area=entry["living_area"],
            group=entry["group"],
            task=entry["task"],
            task_site=entry.get("task_site"),
            spawn=spawn,
            vision_radius=entry.get("vision_radius"),
            att_bandwidth=entry.get("att_bandwidth"),
            retention=entry.get("retention"),
            source=str(path),
        )
        if persona.agent_id in seen:
            raise TownDataError(
                path, f"{label}.name", f"two personas are called {persona.name!r}", "give every persona a unique name"
            )
        seen.add(persona.agent_id)
        out.append(persona)
    return tuple(out)
