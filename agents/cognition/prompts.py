"""Prompt templates (files under ``agents/prompts/<lang>/``), quoting of untrusted text, the system prompt.

Templates use ``string.Template`` placeholders (``$name``), so JSON examples with braces need no
escaping. English (``en``) is the default; a Chinese set (``zh``) is selected with ``agent.lang=zh``.

**Hostile text (issue 7.4).** What another persona says is data, never instructions: it only ever
reaches a prompt through :func:`quote` (a JSON string literal, control characters removed, cut to
``MAX_QUOTE`` characters) inside the *user* message. The system prompt is a pure function of the
persona's own fields, its group and the group's lessons (:func:`system_prompt`).
"""

from __future__ import annotations

import functools
import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from ga_env.personas import Group, Persona

__all__ = ["LANGS", "MAX_QUOTE", "PersonaProfile", "quote", "render", "system_prompt", "template"]

LANGS: tuple[str, ...] = ("en", "zh")
MAX_QUOTE = 280
"""Longest quoted utterance (the env's ``MAX_UTTERANCE``)."""
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")


@functools.cache
def template(lang: str, name: str) -> string.Template:
    """The template ``agents/prompts/<lang>/<name>.txt``.

    Raises:
        ValueError: an unknown language or template, with the fix.
    """
    if lang not in LANGS:
        raise ValueError(f"config: agent.lang: {lang!r} is unknown. Fix: use one of {', '.join(LANGS)}")
    path = resources.files("agents") / "prompts" / lang / f"{name}.txt"
    if not path.is_file():
        raise ValueError(f"agents/prompts/{lang}/{name}.txt: template: missing. Fix: reinstall the package")
    return string.Template(path.read_text(encoding="utf-8").strip())


def render(lang: str, template_name: str, /, **fields: object) -> str:
    """Fill a template; every placeholder must be given (a missing one is a bug, so it raises)."""
    return template(lang, template_name).substitute({k: str(v) for k, v in fields.items()})


def quote(text: str, limit: int = MAX_QUOTE) -> str:
    """Untrusted text as quoted, length-limited data: a JSON string literal of at most ``limit`` characters.

    Newlines become ``\\n`` and quotes are escaped, so the text cannot close the quotation or start
    a new line that looks like a prompt section. Chat-template markers inside it (``<|im_start|>``...)
    survive quoting; the backends neutralise them (:mod:`agents.llm.sanitize`) and the local one
    tokenizes contents without special tokens.
    """
    text = _CONTROL.sub(" ", str(text))
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return json.dumps(text, ensure_ascii=False)


def numbered(lines: Sequence[str], *, ids: Sequence[int] | None = None, limit: int = MAX_QUOTE) -> str:
    """Lines as a quoted list (``- "..."`` or ``[id] "..."``), or ``(none)``."""
    if not lines:
        return "(none)"
    if ids is None:
        return "\n".join(f"- {quote(line, limit)}" for line in lines)
    return "\n".join(f"[{i}] {quote(line, limit)}" for i, line in zip(ids, lines, strict=True))


@dataclass(frozen=True, kw_only=True)
class PersonaProfile:
    """What a persona's prompts and rule-based fallbacks read: its own fields, its group, its places."""

    persona: Persona
    group: Group
    home: str
    """Place (``Sector:arena``) of the persona's home."""
    task_places: tuple[str, ...]
    research_places: tuple[str, ...]
    social_places: tuple[str, ...]

    @property
    def places(self) -> tuple[str, ...]:
        """The places the persona's schedule may use (home first), without duplicates."""
        return tuple(dict.fromkeys((self.home, *self.task_places, *self.research_places, *self.social_places)))

    def values(self, term: str) -> bool:
        """Whether the group's objective rewards ``term``."""
        return self.group.objective.get(term, 0.0) > 0


def system_prompt(profile: PersonaProfile, lessons: Sequence[str], lang: str) -> str:
    """The persona's system prompt: identity, group, task, cause and the group's injected lessons.

    Lessons are the trainer's own summaries of rollouts (not another persona's words); they are
    still cut to a sane length.
    """
    p, g = profile.persona, profile.group
    cause = ""
    if g.cause:
        cause = f"Your group's cause: {g.cause}." if lang == "en" else f"你的群体的事业：{g.cause}。"
    none = "(none yet)" if lang == "en" else "（暂无）"
    lesson_text = "\n".join(f"- {_CONTROL.sub(' ', x)[:400]}" for x in lessons[:8]) or none
    return render(
        lang,
        "system",
        name=p.name,
        age=p.age,
        innate=p.innate,
        learned=p.learned,
        currently=p.currently,
        lifestyle=p.lifestyle,
        home=profile.home,
        group_description=g.description,
        task=p.task,
        cause_line=cause,
        lessons=lesson_text,
    )
