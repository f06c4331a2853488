"""Opt-out and opt-in keywords: which replies change whether a phone may be texted.

Pure functions. A reply counts only when its whole content is a keyword, compared after
trimming, folding full-width and other compatibility forms (NFKC: `ＴＤ` is `TD`) and ignoring
case; "hello TD friend" is just a reply.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_OPT_OUT = ("TD", "T", "N", "R", "退订", "退", "取消", "STOP", "UNSUBSCRIBE")
DEFAULT_OPT_IN = ("START", "订阅")
# The longest keyword accepted (what opt_outs.keyword holds).
MAX_KEYWORD_LENGTH = 32
# Content longer than this (trimmed) cannot fold to a keyword: NFKC composes at most three
# code points into one (Hangul), so it is not worth normalizing.
_LONGEST_CANDIDATE = 4 * MAX_KEYWORD_LENGTH


def fold(text: str) -> str:
    """The form keywords and replies are compared in: NFKC, trimmed, case-folded."""
    return unicodedata.normalize("NFKC", text).strip().casefold()


@dataclass(frozen=True, slots=True)
class Choice:
    """What a keyword reply asks for: out (True) or back in (False), and the keyword."""

    opted_out: bool
    keyword: str


@dataclass(frozen=True, slots=True)
class Keywords:
    """The two keyword lists, folded, each keyword mapped to the spelling it was configured in."""

    opt_out: dict[str, str]
    opt_in: dict[str, str]

    @classmethod
    def of(cls, opt_out: Iterable[str], opt_in: Iterable[str]) -> Keywords:
        """Keywords from the configured spellings; ValueError names a bad one (empty, too long,
        or in both lists)."""
        outs, ins = _folded(opt_out), _folded(opt_in)
        both = sorted(outs.keys() & ins.keys())
        if both:
            raise ValueError(f"{', '.join(both)} is both an opt-out and an opt-in keyword")
        return cls(outs, ins)

    def choice(self, content: str) -> Choice | None:
        """The opt-out or opt-in a reply's content asks for, or None for any other reply."""
        if len(content) > _LONGEST_CANDIDATE and len(content.strip()) > _LONGEST_CANDIDATE:
            return None
        folded = fold(content)
        if folded in self.opt_out:
            return Choice(True, self.opt_out[folded])
        if folded in self.opt_in:
            return Choice(False, self.opt_in[folded])
        return None


def _folded(keywords: Iterable[str]) -> dict[str, str]:
    folded: dict[str, str] = {}
    for keyword in keywords:
        key = fold(keyword)
        if not key or len(keyword.strip()) > MAX_KEYWORD_LENGTH:
            raise ValueError(f"a keyword must be 1 to {MAX_KEYWORD_LENGTH} characters")
        folded.setdefault(key, keyword.strip())
    return folded


DEFAULT_KEYWORDS = Keywords.of(DEFAULT_OPT_OUT, DEFAULT_OPT_IN)
