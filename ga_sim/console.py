"""The interactive console of a simulation (``ga-simulate --name NAME --interactive``).

The commands of the original Generative Agents' reverie server, one per line on stdin::

    run N                                          simulate N steps (with a progress bar)
    save                                           checkpoint now
    fin | f | finish | save and finish             save and exit
    exit                                           exit, discarding the steps since the last save
    print persona schedule NAME                    the persona's plan for the day
    print all persona schedule                     every persona's plan
    print hourly org persona schedule NAME         the hour-by-hour schedule
    print persona current tile NAME                tile and address
    print persona chatting with buffer NAME        who the persona will not chat with again soon
    print persona associative memory (event|thought|chat) NAME
    print persona spatial memory NAME              the places the persona knows
    print current time                             the town's clock
    print lessons                                  the trained lessons in the personas' prompts
    print tile event X,Y                           what happens on a tile (personas, the object's state)
    print tile details X,Y                         address, walls, object (address, state) and who is there
    call -- analysis NAME                          talk with the persona (not stored in its memory);
                                                   then one message per line, 'end_convo' to stop
    call -- load history FILE.csv                  seed memories (CSV columns name,whisper)
    call -- whisper NAME: TEXT                     the persona's inner voice: a high-poignancy thought
                                                   that makes it re-plan the rest of its day
    start path tester mode                         the path a persona would walk (the simulation does not
                                                   advance); then 'NAME, PLACE' or 'NAME, X,Y' per line,
                                                   'exit' or an empty line to stop
    help                                           this list
    history                                        the commands typed so far

Names are full names or unique first names, case-insensitive. An unknown command gets a clear
message and the list of commands; a bad argument (unknown persona, off-map tile, missing file)
gets an error naming it, and the session goes on.

The path tester follows the town's own shortest paths (``TownMap.next_hop``, what a Move walks): a
PLACE is ``Sector:arena`` or a full address ``Town:Sector:arena[:object]``; a tile X,Y stands for
its place, since a Move walks to a place and stops on its first tile.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

import numpy as np

from ga_sim.generative import GenerativeDriver
from ga_sim.society import persona_index

if TYPE_CHECKING:
    from ga_sim.simulation import Simulation

HELP = __doc__.split("::", 1)[1].split("\n\nNames", 1)[0].strip("\n") if __doc__ else ""
PROMPT = "Enter option: "
PATH_PROMPT = "Path tester (NAME, PLACE or NAME, X,Y): "
FINISH = ("fin", "f", "finish", "save and finish")
"""The commands that save the run and end the session (the reverie server's aliases)."""


class Console:
    """Reads commands, runs them on a :class:`ga_sim.simulation.Simulation`, prints the answers.

    Args:
        sim: the simulation.
        progress: show a progress bar during ``run N``.
    """

    def __init__(self, sim: Simulation, *, progress: bool = True) -> None:
        self.sim = sim
        self.progress = progress
        self.history: list[str] = []
        self.saved_step = sim.step_count
        self.commands: list[tuple[re.Pattern[str], Callable[..., str]]] = [
            (re.compile(r"run\s+(\S+)"), self.cmd_run),
            (re.compile(r"save"), self.cmd_save),
            (re.compile(r"print\s+persona\s+schedule\s+(.+)"), self.cmd_schedule),
            (re.compile(r"print\s+all\s+persona\s+schedule"), self.cmd_all_schedules),
            (re.compile(r"print\s+hourly\s+org\s+persona\s+schedule\s+(.+)"), self.cmd_hourly),
            (re.compile(r"print\s+persona\s+current\s+tile\s+(.+)"), self.cmd_tile_of),
            (re.compile(r"print\s+persona\s+chatting\s+with\s+buffer\s+(.+)"), self.cmd_chat_buffer),
            (re.compile(r"print\s+persona\s+associative\s+memory\s+\((\w+)\)\s+(.+)"), self.cmd_memory),
            (re.compile(r"print\s+persona\s+associative\s+memory\s+(\w+)\s+(.+)"), self.cmd_memory),
            (re.compile(r"print\s+persona\s+spatial\s+memory\s+(.+)"), self.cmd_spatial),
            (re.compile(r"print\s+current\s+time"), self.cmd_time),
            (re.compile(r"print\s+lessons"), self.cmd_lessons),
            (re.compile(r"print\s+tile\s+event\s+(.+)"), self.cmd_tile_event),
            (re.compile(r"print\s+tile\s+details\s+(.+)"), self.cmd_tile_details),
            (re.compile(r"call\s+--\s+load\s+history\s+(.+)"), self.cmd_load_history),
            (re.compile(r"call\s+--\s+whisper\s+([^:]+):(.*)"), self.cmd_whisper),
            (re.compile(r"help|\?"), lambda: HELP),
            (re.compile(r"history"), self.cmd_history),
        ]

    # -- the loop --
    def loop(self, stdin: IO[str], stdout: IO[str]) -> int:
        """Read and run commands until ``fin`` (or an alias), ``exit`` or the end of the input; returns the exit
        code."""
        interactive = stdin.isatty()
        if interactive:
            try:
                import readline  # noqa: F401  (arrow-key history and line editing)
            except ImportError:
                pass
        print(
            f"run {self.sim.store.name} at step {self.sim.step_count} ({self.sim.env.now:%Y-%m-%d %H:%M}); type help",
            file=stdout,
        )
        while True:
            if interactive:
                stdout.write(PROMPT)
                stdout.flush()
            line = stdin.readline()
            if not line:  # end of input: keep what was simulated, as 'fin' does
                print(self.finish(save=True), file=stdout)
                return 0
            line = line.strip()
            if not line:
                continue
            self.history.append(line)
            if not interactive:
                print(f"{PROMPT}{line}", file=stdout)
            if " ".join(line.split()) in FINISH:
                print(self.finish(save=True), file=stdout)
                return 0
            if line == "exit":
                print(self.finish(save=False), file=stdout)
                return 0
            m = re.fullmatch(r"call\s+--\s+analysis\s+(.+)", line)
            if m:
                self.analysis(m.group(1).strip(), stdin, stdout, interactive)
                continue
            if re.fullmatch(r"start\s+path\s+tester\s+mode", line):
                self.path_tester(stdin, stdout, interactive)
                continue
            print(self.execute(line), file=stdout)
            stdout.flush()

    def execute(self, line: str) -> str:
        """Run one command (not ``fin``/``exit``/``call -- analysis``/the path tester) and return its answer."""
        for pattern, handler in self.commands:
            m = pattern.fullmatch(line.strip())
            if m:
                return self._answer(handler, *(g.strip() for g in m.groups()))
        return f"unknown command {line!r}; type 'help' for the list of commands"

    @staticmethod
    def _answer(handler: Callable[..., str], *args: str) -> str:
        """The handler's answer, or ``error: ...`` for bad input (the session goes on)."""
        try:
            return handler(*args)
        except (KeyError, ValueError, OSError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            return f"error: {msg}"

    def analysis(self, name: str, stdin: IO[str], stdout: IO[str], interactive: bool) -> None:
        """Talk with a persona, one message per line, until ``end_convo`` (nothing is stored)."""
        try:
            who = self.sim.env.personas[persona_index(self.sim.env, name)].name
        except KeyError as e:
            print(f"error: {e.args[0]}", file=stdout)
            return
        print(f"talking with {who} (not stored in memory); 'end_convo' to stop", file=stdout)
        while True:
            if interactive:
                stdout.write("You: ")
                stdout.flush()
            line = stdin.readline()
            if not line or line.strip() == "end_convo":
                print(f"end of the conversation with {who}", file=stdout)
                return
            message = line.strip()
            if not message:
                continue
            self.history.append(message)
            if not interactive:
                print(f"You: {message}", file=stdout)
            print(self.sim.society.analysis_chat(who, message), file=stdout)

    def path_tester(self, stdin: IO[str], stdout: IO[str], interactive: bool) -> None:
        """Show the path of a persona to a place or tile, one request per line, until ``exit`` or an empty line."""
        print(
            "path tester: type NAME, PLACE or NAME, X,Y (e.g. 'Isabel, Willow Cafe:dining area'); "
            "'exit' or an empty line to stop (the simulation does not advance)",
            file=stdout,
        )
        while True:
            if interactive:
                stdout.write(PATH_PROMPT)
                stdout.flush()
            line = stdin.readline()
            request = line.strip()
            if not request or request == "exit":
                if request:
                    self.history.append(request)
                print("left path tester mode", file=stdout)
                return
            self.history.append(request)
            if not interactive:
                print(f"{PATH_PROMPT}{request}", file=stdout)
            print(self._answer(self.cmd_path, request), file=stdout)
            stdout.flush()

    def finish(self, *, save: bool) -> str:
        """``fin`` (save) or ``exit`` (roll back to the last save)."""
        if save:
            path = self.sim.save()
            return f"saved step {self.sim.step_count} to {path}; bye"
        store = self.sim.store
        dropped = [p for s, p in store.checkpoints() if s > self.saved_step]
        for path in dropped:
            path.unlink()
        store.truncate_steps(self.saved_step)
        return f"discarded the steps after step {self.saved_step}; bye"

    # -- commands --
    def cmd_run(self, n: str) -> str:
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"run: {n!r} is not a positive number of steps. Fix: e.g. 'run 12'")
        self.sim.run(int(n), progress=self.progress)
        return f"ran {n} step(s); now step {self.sim.step_count}, {self.sim.env.now:%Y-%m-%d %H:%M}"

    def cmd_save(self) -> str:
        path = self.sim.save()
        self.saved_step = self.sim.step_count
        return f"saved step {self.sim.step_count} to {path}"

    def cmd_schedule(self, name: str) -> str:
        return str(self.sim.society.schedule(name))

    def cmd_all_schedules(self) -> str:
        return "\n".join(str(self.sim.society.schedule(p.name)) for p in self.sim.env.personas)

    def cmd_hourly(self, name: str) -> str:
        return str(self.sim.society.hourly_schedule(name))

    def cmd_tile_of(self, name: str) -> str:
        return str(self.sim.society.current_tile(name))

    def cmd_chat_buffer(self, name: str) -> str:
        return str(self.sim.society.chatting_with_buffer(name))

    def cmd_memory(self, kind: str, name: str) -> str:
        return str(self.sim.society.associative_memory(name, kind))

    def cmd_spatial(self, name: str) -> str:
        return str(self.sim.society.spatial_memory(name))

    def cmd_time(self) -> str:
        env = self.sim.env
        return f"{env.now:%A %B %d, %Y, %H:%M} (step {self.sim.step_count}, {env.stride} min per step)"

    def cmd_lessons(self) -> str:
        lessons = self.sim.society.lessons()
        source = self.sim.meta.get("lessons_source")
        if not any(lessons.values()):
            if self.sim.society.llm is None:
                return "no lessons: this mind has no language model (no prompts to put them in)"
            where = f" ({source} has none)" if source else ""
            return (
                f"no lessons in the prompts{where}; start a run with --lessons RUN_OR_CHECKPOINT to add a GRPO "
                "run's lessons"
            )
        lines = [f"lessons from {source}:" if source else "lessons:"]
        for group, texts in lessons.items():
            lines.append(f"  {group}:")
            lines.extend(f"    {k + 1}. {text}" for k, text in enumerate(texts))
        return "\n".join(lines)

    def _xy(self, text: str) -> tuple[int, int]:
        m = re.fullmatch(r"\(?\s*(-?\d+)\s*,\s*(-?\d+)\s*\)?", text)
        if not m:
            raise ValueError(f"tile: {text!r} is not X,Y. Fix: write e.g. 'print tile details 12,7'")
        x, y = int(m.group(1)), int(m.group(2))
        town = self.sim.env.town_map
        if not (0 <= x < town.width and 0 <= y < town.height):
            raise ValueError(f"tile: ({x}, {y}) is off the map. Fix: use 0 <= X < {town.width}, 0 <= Y < {town.height}")
        return x, y

    def _on_tile(self, x: int, y: int) -> list[int]:
        env = self.sim.env
        w = env.town_map.width
        return [int(i) for i in np.flatnonzero(env.pos_flat == y * w + x)]

    def _object_at(self, x: int, y: int) -> tuple[str, str] | None:
        """The address and state of the object on a tile; None without one, or when the mind keeps no object
        state (a numeric policy: only the generative personas act on objects)."""
        society = self.sim.society
        return society.object_at(x, y) if isinstance(society, GenerativeDriver) else None

    def cmd_tile_event(self, text: str) -> str:
        x, y = self._xy(text)
        env = self.sim.env
        lines = [f"({x}, {y}): {env.personas[i].name} is {env.describe(i)}" for i in self._on_tile(x, y)]
        obj = self._object_at(x, y)
        if obj is not None and (lines or obj[1] != "idle"):
            lines.append(f"({x}, {y}): {obj[0]} is {obj[1]}")
        return "\n".join(lines) or f"({x}, {y}): nothing happens here"

    def cmd_tile_details(self, text: str) -> str:
        x, y = self._xy(text)
        env = self.sim.env
        town = env.town_map
        walkable = bool(town.walkable[y, x])
        lines = [
            f"tile ({x}, {y})",
            f"  address:  {town.address(x, y) if walkable else '(wall)'}",
            f"  walkable: {walkable}",
        ]
        obj = int(town.object_of[y, x])
        if obj >= 0:
            lines.append(f"  object:   {town.object_names[obj]}")
            state = self._object_at(x, y)
            if state is not None:
                lines.append(f"  object address: {state[0]}")
                lines.append(f"  object state:   {state[1]}")
        here = [env.personas[i].name for i in self._on_tile(x, y)]
        lines.append(f"  personas: {', '.join(here) if here else '(none)'}")
        return "\n".join(lines)

    def cmd_load_history(self, path: str) -> str:
        return str(self.sim.society.load_history(path))

    def cmd_whisper(self, name: str, text: str) -> str:
        return self.sim.society.whisper(name, text)

    def cmd_history(self) -> str:
        return "\n".join(f"{k + 1:4d}  {line}" for k, line in enumerate(self.history)) or "(no commands yet)"

    # -- path tester --
    def cmd_path(self, text: str) -> str:
        """The path persona NAME would walk to a place or tile: ``NAME, PLACE``, ``NAME, X,Y`` or ``NAME PLACE``."""
        env = self.sim.env
        town = env.town_map
        i, where = self._name_and_destination(text)
        place, tile = self._destination(where)
        hop = town.next_hop(place)  # (H*W,) the town's own shortest paths, as a Move walks them
        pos = int(env.pos_flat[i])
        tiles = int(town.distance_field(place).flat[pos])
        path = [pos]
        for _ in range(tiles):
            path.append(int(hop[path[-1]]))
        w = town.width
        xy = [(p % w, p // w) for p in path]
        speed = env.dynamics.move_speed
        moves = -(-tiles // speed)  # ceil
        address = f"{town.name}:{town.places[place]}"
        lines = [f"{env.personas[i].name} at {xy[0]} {env.address_of(i)} -> {address}"]
        if tiles == 0:
            lines.append("  already there: 0 tiles, no Move step")
        else:
            lines.append("  path: " + " -> ".join(f"({x}, {y})" for x, y in xy))
            lines.append(f"  {tiles} tile(s), {moves} Move step(s) at {speed} tiles per step; arrives at {xy[-1]}")
        if tile is not None and tile != xy[-1]:
            lines.append(f"  {tile} is in {address}: a Move walks to the place and stops on its first tile")
        return "\n".join(lines)

    def _name_and_destination(self, text: str) -> tuple[int, str]:
        """Split ``NAME, DEST``, ``NAME -> DEST`` or ``NAME DEST`` (the longest known name first)."""
        env = self.sim.env
        splits = [tuple(text.split(sep, 1)) for sep in ("->", ",") if sep in text]
        words = text.split()
        splits += [(" ".join(words[:k]), " ".join(words[k:])) for k in range(len(words) - 1, 0, -1)]
        for name, where in splits:
            try:
                i = persona_index(env, name)
            except KeyError:
                continue
            if where.strip():
                return i, where.strip()
        raise ValueError(
            f"path: {text!r} names no persona and destination. Fix: write NAME, PLACE or NAME, X,Y, e.g. "
            f"'Isabel, Willow Cafe:dining area' or 'Isabel, 12,7' (personas: {', '.join(p.name for p in env.personas)})"
        )

    def _destination(self, text: str) -> tuple[int, tuple[int, int] | None]:
        """The place index of a tile ``X,Y`` or an address (``Sector:arena``, ``Town:Sector:arena[:object]``)."""
        town = self.sim.env.town_map
        if re.fullmatch(r"\(?\s*-?\d+\s*,\s*-?\d+\s*\)?", text):
            x, y = self._xy(text)
            if not town.walkable[y, x]:
                raise ValueError(
                    f"path: tile ({x}, {y}) is a wall. Fix: choose a walkable tile (see 'print tile details X,Y')"
                )
            return int(town.place_of[y, x]), (x, y)
        try:
            return town.place_index(text, source="path", field_name="place"), None
        except ValueError:
            parent = text.rsplit(":", 1)[0]  # an object's address: walk to its place
            if text.count(":") >= 2 and parent.split(":", 1)[0] == town.name:
                try:
                    return town.place_index(parent, source="path", field_name="place"), None
                except ValueError:
                    pass
            raise
