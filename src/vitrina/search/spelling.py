"""Typo tolerance for lexical search: a query token the index has never seen is matched to the
index's own terms one edit away (symmetric deletes, as in SymSpell).

Every term of the index is stored with each of its one-character deletions; a misspelt token
meets a term when the two share the token, a term, or a deletion of either. That covers one
insertion, deletion or substitution, and a transposition of neighbours, without scanning the
vocabulary per query. Among candidates the term found in most items wins.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

__all__ = ["Speller"]


def _deletes(term: str) -> set[str]:
    return {term[:i] + term[i + 1 :] for i in range(len(term))}


class Speller:
    """Corrections of unknown tokens towards the vocabulary of an index."""

    def __init__(self, min_length: int = 4) -> None:
        # Shorter tokens have too many neighbours at one edit ("cat" -> bat, cap, car, ...).
        self.min_length = min_length
        self.frequency: dict[str, int] = {}
        self._by_delete: defaultdict[str, set[str]] = defaultdict(set)

    def add(self, terms: Iterable[tuple[str, int]]) -> None:
        """Add (term, number of items holding it); a known term's count is replaced."""
        for term, count in terms:
            if term not in self.frequency and len(term) >= self.min_length:
                for d in _deletes(term):
                    self._by_delete[d].add(term)
            self.frequency[term] = count

    def correct(self, token: str) -> str | None:
        """The likeliest known term one edit from an unknown `token`; None when the token is
        known, too short, or nothing is near."""
        if token in self.frequency or len(token) < self.min_length or not token.isalpha():
            return None
        candidates = set(self._by_delete.get(token, ()))  # the token lost a letter
        for d in _deletes(token):
            if d in self.frequency and len(d) >= self.min_length:  # the token gained a letter
                candidates.add(d)
            candidates |= self._by_delete.get(d, set())  # substitution or transposition
        candidates = {c for c in candidates if _within_one_edit(token, c)}
        if not candidates:
            return None
        return max(sorted(candidates), key=lambda c: self.frequency[c])


def _within_one_edit(a: str, b: str) -> bool:
    """Damerau distance ≤ 1 (the deletes meet also at two edits: those are dropped as too far)."""
    if a == b:
        return True
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    if abs(len(a) - len(b)) != 1:
        return False
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long[i]:
        i += 1
    return short[i:] == long[i + 1 :]
