"""Sentence kinds: whether one sentence of a story may stand in a summary. Pure.

- ``is_cut``: the publisher cut it ("…", "...", "[…]", "Read more" at its end);
- ``is_citation``: a bibliography entry or a reference ("Papernot et al., 2016", a DOI);
- ``is_fragment``: no sentence at all: a heading, a list of names, a CVE id line, a lyric
  marked "[repeated]", a label of a word or two, a line of bare links;
- ``ends_like_sentence``: it closes on a full stop, "!", "?" or "…" (quotes after it kept);
- ``opens_with_reference``: it leans on the sentence before it ("This", "He", "However",
  "The company"...). English only: in other languages nothing is taken for a reference.

A summary is made of sentences that are none of these, or that come with their antecedent.
"""

from __future__ import annotations

import re

__all__ = [
    "ends_like_sentence",
    "is_citation",
    "is_cut",
    "is_fragment",
    "opens_with_reference",
    "without_cut_mark",
]

_CLOSERS = "\"'\u201d\u2019\u00bb)] "
_CUT = re.compile(
    r"(?:\u2026|\.\.\.|\[\s*(?:\u2026|\.\.\.)\s*\]|\(\s*more\s*(?:\u2026|\.\.\.)?\s*\)"
    r"|\bread more|\bcontinue reading|\bmore\s*(?:\u00bb|>>))[\s\u00bb>]*$",
    re.IGNORECASE,
)
_CITATION = re.compile(
    r"\bet al\.?,?\s*\(?(?:19|20)\d{2}\b|\bdoi:\s*10\.\d|\barxiv:\s*\d{4}\.\d"
    r"|^\s*\[\d{1,3}\]\s+\S|\b(?:19|20)\d{2}[a-z]?\)?\.?\s*$(?<=\d\))",
    re.IGNORECASE,
)
_CVE = re.compile(r"\bCVE-\d{4}-\d{3,}", re.IGNORECASE)
_REPEAT_MARK = re.compile(r"\[(?:repeat(?:ed)?|x\s?\d|chorus)\]|\(x\s?\d\)\s*$", re.IGNORECASE)
# Nothing but links: "https://…", "www.…", "<http://…>", one or more.
_LINKS_ONLY = re.compile(r"^\s*(?:<?(?:https?://|www\.)\S+>?\s*)+$", re.IGNORECASE)
# A sentence's closing mark, then any quotes or brackets (spaced, as in "said. \"" of
# tokenised news text).
_SENTENCE_END = re.compile(
    r"[.!?\u3002\uff01\uff1f\u2026][\s\"'`\u201d\u2019\u00bb)\]\u300d\u300f]*$"
)
_WORD = re.compile(r"[^\W\d_][\w'\u2019-]*")
_MIN_WORDS, _MIN_CHARACTERS = 3, 6
_LIST_ITEMS = 3
# Small words that stay lowercase in a Title Case heading.
_MINOR = frozenset(
    "a an the and or but nor of in on at to for by with from as vs via is are was be".split()  # noqa: SIM905
)

_REFERENCE_WORDS = (
    "this|that|these|those|such|he|she|they|it|its|his|her|their|them|him|there's"
    "|but|however|also|meanwhile|moreover|furthermore|additionally|besides|nevertheless"
    "|nonetheless|still|yet|instead|otherwise|thus|therefore|hence|consequently|then|so|and"
    "|likewise|similarly|in addition|in contrast|by contrast|on the other hand|as a result"
    "|as well|even so|after that|before that|at the same time|in turn|in that case|both|another"
)
_REFERENCE_NOUNS = (
    "company|firm|group|agency|ministry|department|government|move|decision|deal|plan|report"
    "|study|statement|spokesman|spokeswoman|spokesperson|official|officials|man|woman|boy|girl"
    "|couple|pair|player|team|club|star|singer|actor|actress|victim|suspect|president|minister"
    "|same|latter|former|incident|attack|case|bill|law|measure|policy|programme|program"
)
_REFERENCE = re.compile(
    rf"^[\"'\u201c\u2018(\[]*(?:{_REFERENCE_WORDS})\b(?!['\u2019]s\b)"
    rf"|^[\"'\u201c\u2018(\[]*the (?:{_REFERENCE_NOUNS})\b(?!['\u2019]?s? (?:of|at|in|for)\b)",
    re.IGNORECASE,
)

# "this", "these" or "those" standing for something said before, within the first words.
_BARE_THIS = re.compile(
    r"^(?:\S+\s+){0,5}(?:this|these|those)\b(?=\s*(?:[.,;:!?]|(?:and|but|or|is|was|are|were"
    r"|has|had|have|will|would|could|as|because|too)\b))",
    re.IGNORECASE,
)


def is_cut(text: str) -> bool:
    """Whether ``text`` ends on a publisher's cut: "…", "...", "[…]", "Read more"."""
    return bool(_CUT.search(text.rstrip()))


def without_cut_mark(text: str) -> str:
    """``text`` without the cut mark it ends on, if any."""
    return _CUT.sub("", text.rstrip()).rstrip()


def is_citation(sentence: str) -> bool:
    """A bibliography entry or reference: "Title, Papernot et al., 2016", a DOI, an arXiv id,
    a numbered "[3] ..." note."""
    return bool(_CITATION.search(sentence))


def ends_like_sentence(text: str) -> bool:
    """Whether ``text`` closes on a sentence's closing mark (".", "!", "?", "…", "。"...),
    with any quotes or brackets after it."""
    return bool(_SENTENCE_END.search(text))


def is_fragment(sentence: str) -> bool:
    """Not a sentence: fewer than three words, a CVE id line, a lyric marked "[repeated]",
    a Title Case heading without closing punctuation, a list of names, or bare links."""
    words = _WORD.findall(sentence)
    if _REPEAT_MARK.search(sentence) or _LINKS_ONLY.match(sentence):
        return True
    if not any(w[:1].lower() != w[:1].upper() for w in words):
        # A script without case (Chinese, Japanese...): words are not spaced, nor capitalised.
        return len("".join(words)) < _MIN_CHARACTERS
    if len(words) < _MIN_WORDS:
        return True
    if _CVE.search(sentence) and not ends_like_sentence(sentence):
        return True  # an advisory's heading: "... header (Critical) (CVE-2019-15605)"
    return _is_heading(sentence, words) or _is_name_list(sentence)


def opens_with_reference(sentence: str, language: str | None = None) -> bool:
    """Whether a sentence opens by pointing back at the one before it ("This", "He", "But",
    "However", "The company"...), or points back with a bare "this" in its first words
    ("Turkey rejects this and says..."). The words are English: in a story known to be in
    another ``language``, no sentence is taken for a reference."""
    if language not in (None, "en"):
        return False
    return bool(_REFERENCE.match(sentence.lstrip()) or _BARE_THIS.match(sentence.lstrip()))


def _is_heading(sentence: str, words: list[str]) -> bool:
    """No closing punctuation, and every word that is not a small one is capitalised."""
    if ends_like_sentence(sentence):
        return False
    major = [w for w in words if w.lower() not in _MINOR]
    return bool(major) and all(w[:1].isupper() or not w[:1].isalpha() for w in major)


def _is_name_list(sentence: str) -> bool:
    """Three or more comma-separated items of one to three capitalised words each."""
    items = [i.strip() for i in re.split(r",|;|\band\b|&", sentence.rstrip(" .")) if i.strip()]
    if len(items) < _LIST_ITEMS:
        return False
    return all(
        1 <= len(item.split()) <= 3 and all(w[:1].isupper() for w in item.split()) for item in items
    )
