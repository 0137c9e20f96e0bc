"""Compress a run for replay and reading: ``python -m scripts.compress --name NAME``.

Writes ``<results>/compressed/NAME/``:

* ``movement.json``: ``meta`` (name, start time, stride, personas, groups), ``map`` (size, walls,
  places), ``initial`` positions, ``movement``: one entry per step with the step's ``time`` and,
  per persona, only the fields that changed since the previous step (``tile``, ``action``,
  ``emoji``, ``description``, ``place``, ``utterance``, ``partner``, ``object``: the address of the
  object it acted on), so an idle town costs nothing, and ``objects``: the objects in use at that
  step (address -> state; absent when every object is idle); ``object_tiles``: the tiles of every
  object that was ever in use (address -> ``[[x, y], ...]``); ``conversations``: every conversation with its time, place, participants and turns;
  ``groups``: per-step group figures (reward, awareness, knowledge...).
* ``simulation.md``: a readable timeline per persona (consecutive steps doing the same thing are
  one line with a time range), with the conversations they took part in, then all conversations,
  then the object events (each object's states with their time ranges).
* ``diffusion/``: the conversation graph and the cascades of first exposure to each cause (GraphML,
  ``diffusion.json``, PNG plots shown on the replay page); see :mod:`ga_sim.diffusion`.

:func:`expand_movement` rebuilds full per-step states from the deltas (the replay page does the
same in JavaScript).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from ga_env.checkpoint import atomic_write_bytes
from ga_sim.runstore import RunError, RunStore, validate_name

FIELDS = ("tile", "place", "action", "emoji", "description", "utterance", "partner", "object")
"""Per-persona fields kept in ``movement.json``."""


def conversations_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversations of one step record: the mind's own, or pairs of utterances."""
    if record.get("conversations"):
        out = []
        for c in record["conversations"]:
            turns = [list(t) for t in c.get("turns", [])]
            out.append({"participants": list(c["participants"]), "turns": turns})
        return out
    seen: set[frozenset[str]] = set()
    out = []
    for name, p in record["personas"].items():
        partner = p.get("partner")
        if not partner or not p.get("utterance"):
            continue
        pair = frozenset((name, partner))
        if pair in seen:
            continue
        seen.add(pair)
        turns = [[name, p["utterance"]]]
        reply = record["personas"].get(partner, {})
        if reply.get("partner") == name and reply.get("utterance"):
            turns.append([partner, reply["utterance"]])
        out.append({"participants": [name, partner], "turns": turns})
    return out


META_FIELDS = ("name", "start", "stride", "mind", "personas", "groups", "map", "initial", "config")
"""Fields of ``meta.json`` that :func:`compress_run` needs."""


def compress_run(store: RunStore) -> dict[str, Any]:
    """``movement.json``'s content for a run.

    Raises:
        RunError: ``meta.json`` or a step record is unreadable, damaged or of another version; the
            message names the file, the field or line, and a fix.
    """
    meta = store.meta()
    try:
        for field in META_FIELDS:
            if field not in meta:
                raise KeyError(field)
        names = [p["name"] for p in meta["personas"]]
        head = {
            "name": meta["name"],
            "start": meta["start"],
            "stride": meta["stride"],
            "mind": meta["mind"],
            "llm": meta["config"]["llm"]["backend"] if meta["mind"] == "generative" else None,
            "steps": 0,  # set below
            "personas": meta["personas"],
            "groups": meta["groups"],
            "forked_from": meta.get("forked_from"),
        }
    except (KeyError, TypeError, IndexError) as e:
        raise RunError(
            store.meta_path,
            str(e.args[0]) if isinstance(e, KeyError) else "file",
            f"missing or malformed ({type(e).__name__}: {e}): written by another version, or damaged",
            "restore meta.json from a backup, or start a new run",
        ) from None
    previous: dict[str, dict[str, Any]] = {n: {} for n in names}
    fell_back: dict[str, int] = dict.fromkeys(names, 0)  # steps on which a persona had a fallback
    by_fault: dict[str, int] = {}  # "request kind:fault kind" -> count
    movement: list[dict[str, Any]] = []
    conversations: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    object_tiles: dict[str, list[list[int]]] = {}
    for line, record in enumerate(store.iter_steps(), 1):  # one record per line
        try:
            delta: dict[str, Any] = {}
            for name in names:
                p = record["personas"][name]
                changed = {f: p.get(f) for f in FIELDS if p.get(f) != previous[name].get(f)}
                if changed:
                    delta[name] = changed
                    previous[name] = {f: p.get(f) for f in FIELDS}
                if p.get("fallback"):
                    fell_back[name] += 1
                    for f in p.get("fallbacks") or ["unknown:unknown"]:
                        by_fault[f] = by_fault.get(f, 0) + 1
            entry = {"step": record["step"], "time": record["time"], "personas": delta}
            if record.get("objects"):  # a policy mind's records have no objects
                entry["objects"] = dict(record["objects"])
                object_tiles.update(record["object_tiles"])
            talks = []
            for c in conversations_of(record):
                place = record["personas"][c["participants"][0]]["place"]
                talks.append({"step": record["step"], "time": record["time"], "place": place, **c})
        except (KeyError, TypeError, IndexError, AttributeError) as e:
            raise store.line_error(line, f"not a step record of this run ({type(e).__name__}: {e})") from None
        movement.append(entry)
        groups.append(record.get("groups", {}))
        conversations += talks
    fallbacks = {"persona_steps": sum(fell_back.values()), "by_persona": fell_back, "by_request": by_fault}
    return {
        "meta": {**head, "steps": len(movement), "fallbacks": fallbacks},  # the keys keep their order
        "map": meta["map"],
        "initial": meta["initial"],
        "movement": movement,
        "conversations": conversations,
        "groups": groups,
        "object_tiles": object_tiles,
    }


def expand_movement(doc: dict[str, Any]) -> list[dict[str, dict[str, Any]]]:
    """Full per-step persona states (``[{name: {field: value}}]``) from ``movement.json``'s deltas."""
    state = {n: {**dict.fromkeys(FIELDS), "tile": list(xy)} for n, xy in doc["initial"].items()}
    out = []
    for entry in doc["movement"]:
        for name, changed in entry["personas"].items():
            state[name] = {**state[name], **changed}
        out.append({n: dict(s) for n, s in state.items()})
    return out


def _minds(meta: dict[str, Any]) -> str:
    if meta["mind"] != "generative":
        return f"{meta['mind']} policy (numeric, no language model; utterances are templates)"
    if meta["llm"] == "scripted":
        return "generative personas on the scripted backend (rule-based answers, not a language model)"
    return f"generative personas on the {meta['llm']} backend"


def _after(iso: str, minutes: int) -> str:
    return (dt.datetime.fromisoformat(iso) + dt.timedelta(minutes=minutes)).isoformat(timespec="minutes")


def _hm(iso: str) -> str:
    return iso[11:16]


def simulation_markdown(doc: dict[str, Any]) -> str:
    """``simulation.md``: a readable timeline per persona, then the conversations."""
    meta = doc["meta"]
    full = expand_movement(doc)
    times = [e["time"] for e in doc["movement"]]
    lines = [
        f"# Simulation `{meta['name']}`",
        "",
        f"- start: {meta['start']}, {meta['stride']} minutes per step, {meta['steps']} steps",
        f"- minds: {_minds(meta)}",
        f"- personas: {len(meta['personas'])}; groups: {', '.join(g['name'] for g in meta['groups'])}",
    ]
    if meta.get("forked_from"):
        lines.append(f"- forked from `{meta['forked_from'][0]}` at step {meta['forked_from'][1]}")
    fallbacks = meta.get("fallbacks") or {}
    total = meta["steps"] * len(meta["personas"])
    if fallbacks.get("persona_steps"):
        n = fallbacks["persona_steps"]
        why = ", ".join(f"{k} {v}" for k, v in sorted(fallbacks["by_request"].items(), key=lambda kv: -kv[1])[:6])
        lines.append(
            f"- **rule-based fallback**: on {n} of {total} persona-steps ({n / max(total, 1):.1%}) at least one "
            f"of the persona's LLM requests was answered by the fallback rule, not the model ({why})"
        )
    by_persona: dict[str, list[dict[str, Any]]] = {p["name"]: [] for p in meta["personas"]}
    for c in doc["conversations"]:
        for who in c["participants"]:
            by_persona.setdefault(who, []).append(c)
    for persona in meta["personas"]:
        name = persona["name"]
        lines += ["", f"## {name}", "", f"*{persona['group']}* — {persona['task']}", ""]
        own = (fallbacks.get("by_persona") or {}).get(name, 0)
        if own:
            lines += [f"(on the rule-based fallback for part of its requests on {own} of {meta['steps']} steps)", ""]
        run_start, current = 0, None
        for k in range(len(full) + 1):
            key = None
            if k < len(full):
                s = full[k][name]
                key = (s.get("description"), s.get("place"), s.get("emoji"))
            if key != current:
                if current is not None:
                    end = times[k] if k < len(times) else _after(times[-1], meta["stride"])
                    span = f"{_hm(times[run_start])}–{_hm(end)}"
                    day = times[run_start][:10]
                    lines.append(f"- {day} {span} {current[2]} {current[0]} @ {current[1]}")
                run_start, current = k, key
        talks = by_persona.get(name, [])
        if talks:
            lines += ["", f"Conversations ({len(talks)}):", ""]
            for c in talks:
                other = ", ".join(p for p in c["participants"] if p != name)
                lines.append(f"- {c['time'][:10]} {_hm(c['time'])} with {other} @ {c['place']}")
    lines += ["", "## Conversations", ""]
    if not doc["conversations"]:
        lines.append("(none)")
    for c in doc["conversations"]:
        lines += [f"### {c['time'][:10]} {_hm(c['time'])} — {' & '.join(c['participants'])} @ {c['place']}", ""]
        for speaker, text in c["turns"]:
            quoted = str(text).replace("\n", " ")
            lines.append(f"> **{speaker}:** {quoted}  ")
        lines.append("")
    lines += object_markdown(doc)
    return "\n".join(lines).rstrip() + "\n"


def object_markdown(doc: dict[str, Any]) -> list[str]:
    """The ``## Objects`` section of ``simulation.md``: per object in use, its states with their time ranges."""
    meta, moves = doc["meta"], doc["movement"]
    if not doc.get("object_tiles"):
        return []
    lines = ["## Objects", ""]
    for address in sorted(doc["object_tiles"]):
        lines += [f"### {address}", ""]
        run_start, current = 0, None
        for k in range(len(moves) + 1):
            state = (moves[k].get("objects") or {}).get(address) if k < len(moves) else None
            if state != current:
                if current is not None:
                    end = moves[k]["time"] if k < len(moves) else _after(moves[-1]["time"], meta["stride"])
                    lines.append(
                        f"- {moves[run_start]['time'][:10]} {_hm(moves[run_start]['time'])}–{_hm(end)} {current}"
                    )
                run_start, current = k, state
        lines.append("")
    return lines


def compress(results: str | Path, name: str) -> Path:
    """Write ``<results>/compressed/NAME/{movement.json,simulation.md,diffusion/}``; returns the folder."""
    store = RunStore(results, name)
    doc = compress_run(store)
    out = Path(results) / "compressed" / validate_name(name)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "movement.json", json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode())
    atomic_write_bytes(out / "simulation.md", simulation_markdown(doc).encode())
    from ga_sim import diffusion

    diffusion.write(doc, out / "diffusion")
    return out
