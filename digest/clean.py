"""Clean: story text without site boilerplate, and an article's main text from its HTML page.

Pure: no I/O, no clock. Boilerplate is found by general signals, never by a list of one
site's sentences:

- lines repeated across a feed's entries or a site's pages (``repeated_lines``), or repeated
  within the text itself;
- a leading or trailing sentence, line or parenthesised group that recurs in a good share
  of a feed's entries (``repeated_edges``): outlet labels, bylines, sign-offs, tag
  lists such as "(Nvidia Volta, Grafikhardware)"; and a news wire's label at the start of a
  story, "(CNN)", "(Reuters) -", "LONDON (AP) —";
- call-to-action lines: an imperative of the subscribe / sign up / follow / share / read more
  / accept-cookies class aimed at its usual object (a newsletter, an email box, a social
  network, an app, "the full story"), cookie and "appeared first on" notices, and bare link
  labels such as "Read more", "Permalink" or "Related stories";
- headline-like lines (short, capitalised, no closing punctuation) and short link labels
  around such lines at either end of a text, as "more stories" lists, menus and footers are;
- a dateline such as ``date 2021-01-14`` in front of the headline.

Repeated lines and headline lists are cut only at the two ends of a text, where a site's
header and footer sit: an end zone goes whole when a call to action leads it or at least half
of it is boilerplate, otherwise only its lines known from the feed go. In the middle only
call-to-action lines go, and the sentences and lines of three words or more that the feed
repeats ("Wir fassen zusammen.", "Ending theme by Jonathan Mann"): a shorter line repeated in
the middle of a story is usually a heading or a separator, and is kept. A phrase the feed
sends as a line of its own goes too when it is glued onto the end of a text.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from enum import Enum

__all__ = [
    "MAX_ARTICLE_HTML_SIZE",
    "clean_text",
    "extract_article",
    "is_call_to_action",
    "normalise_line",
    "repeated_edges",
    "repeated_lines",
    "split_headline",
]

# Bytes of HTML (characters, for a str). Real article pages are 50 KB-1 MB, mostly scripts;
# 2 MB of dense markup takes trafilatura seconds of CPU, and a page that big is an archive,
# a feed dump or an attack rather than one article.
MAX_ARTICLE_HTML_SIZE = 2_000_000
_MIN_ARTICLE_CHARS = 200  # less than this is a teaser at best: the feed text already has it
_MIN_SENTENCE_CHARS = 40
_DENSE_SHARE = 2  # an end zone that is at least half boilerplate is furniture all through
_SELF_REPEATS = 3  # a line this often in one text is page furniture (if it has 3+ words)
_STOCK_WORDS = 3  # a sentence or line a feed repeats, from this long, is its stock phrase

_WORDS = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
_LEADING_MARKS = re.compile(r"^[\W_]+")
# Closing punctuation, also the full-width marks, then any closing quotes or brackets.
_SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f][\"'\u201d\u2019\u00bb)\]]*$")
_BLANK_RUN = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_NO_HEADLINE_END = re.compile(r"[;:,\u2026]$")
# Where one sentence ends and the next starts, for a text's first and last sentence: closing
# punctuation (and closing quotes) before a space, or a line break.
_CLOSERS = "\"'\u201d\u2019\u00bb)]"
_SENTENCE_BREAK = re.compile(rf"(?<=[.!?\u2026\u3002\uff01\uff1f])[{re.escape(_CLOSERS)}]*\s+|\n")
_PHRASE_WORDS = 8  # the longest glued-on closing phrase looked for
_CLOSING_MARKS = re.compile(r"[.!?\u2026\u3002\uff01\uff1f]+$")
_PAREN_TAIL = re.compile(r"\s*\((?P<inside>[^()\n]{1,200})\)\s*$")
_PAREN_HEAD = re.compile(r"^\s*\((?P<inside>[^()\n]{1,60})\)\s*")
# Stands in ``repeated_edges``' answer for "this feed ends its texts on a tag list"; no
# normalised line has brackets.
PARENTHESISED_TAILS = "(\u2026)"
# The same for "this feed closes its texts on a label or byline" (one without punctuation).
CLOSING_LABELS = "(label)"
_LABEL_WORDS = 6
# A news wire's label before the story: "(CNN)", "( CNN )", "(Reuters) -", "LONDON (AP) \u2014".
_WIRES = r"CNN|Reuters|AP|AFP|UPI|Bloomberg|dpa|EFE|PA|Xinhua|ANSA|Kyodo|Yonhap|TASS|IANS|PTI"
_WIRE_LABEL = re.compile(
    rf"^\s*(?:[A-Z][A-Z.'\u2019 -]{{1,40}}(?:,\s*[A-Z][\w.' -]{{1,30}})?\s*)?"
    rf"\(\s*(?:{_WIRES})(?: [A-Z][a-z]+)?\s*\)\s*(?:[-\u2013\u2014:]+\s*)?"
)

_DASHES = r"[|\u2022\u00b7\u2013\u2014-]"  # a bar, bullet, middle dot or dash after a date
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_ISO_DATE = r"\d{4}-\d{2}-\d{2}(?:[t ]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:z|[+-]\d{2}:?\d{2})?)?"
_ANY_DATE = (
    rf"(?:{_ISO_DATE}|\d{{1,2}}[./]\d{{1,2}}[./]\d{{4}}|\d{{1,2}} {_MONTH},? \d{{4}}"
    rf"|{_MONTH} \d{{1,2}},? \d{{4}})(?=\s|$|{_DASHES})"
)
_DATE_LABEL = r"(?:date|dated|published|posted|updated|last updated|modified)(?: on| at)?\s*:?"
_DATELINE = re.compile(
    rf"^\s*(?P<label>{_DATE_LABEL}\s*)?(?P<date>{_ANY_DATE})(?:\s*{_DASHES})?\s*", re.IGNORECASE
)

_SOCIAL = (
    r"(?:twitter|x|facebook|instagram|linkedin|youtube|tiktok|telegram|whatsapp|mastodon"
    r"|threads|bluesky|pinterest|reddit|flipboard|google news)"
)
_THIS = r"(?:this|it|the|our|my)"
_CONTENT = r"(?:article|story|stories|post|piece|page|report|entry|interview|column)"
_MAIL = r"(?:newsletters?|e-?mails?|inbox|mailing list|briefing|digest|alerts?|updates)"
# An imperative at the start of a line (after an optional lead such as "please" or "to read
# this in full,"), paired with the object such a call to action is about.
_CALLS = (
    r"(?:subscribe|sign ?up|unsubscribe)\b",
    r"register (?:now|today|here|free|for (?:free|an? |our |the )|to )",
    rf"join (?:us|our|{_THIS} (?:conversation|discussion|community|{_MAIL}))\b",
    r"become an? (?:member|subscriber|supporter|patron)\b",
    rf"follow (?:us|me|our|on {_SOCIAL}|@)",
    rf"(?:share|tweet|email|e-mail|print|save|pin|bookmark)(?: {_THIS} (?:{_CONTENT}|link)"
    rf"| this| it)?(?: on {_SOCIAL}| via \w+| with (?:your )?friends)?\W*$",
    rf"share (?:it|this|them|{_THIS} {_CONTENT}) with (?:your |all your )?(?:friends|family"
    r"|colleagues|followers)\b",
    r"like us on\b|like (?:our|my) (?:page|facebook)",
    r"(?:keep|continue) reading\b",
    rf"read (?:more|on|full|in full|the (?:full|whole|rest|entire|original)|{_THIS} (?:full )?"
    rf"{_CONTENT})\b",
    r"(?:click|tap) (?:here|this link|the link|below|to \w+)",
    r"enter your (?:e-?mail|email address|address)",
    rf"get (?:our|the|my|your|free|daily|weekly)\b.*\b{_MAIL}",
    r"(?:download|install|get) (?:our|the) (?:free )?(?:\w+ )?app\b",
    r"(?:support|donate to|fund) (?:us|me|(?:our|my|this) (?:work|journalism|site|blog"
    r"|newsletter|podcast|channel))\b",
    r"(?:accept|allow|manage|reject) (?:all )?cookies?\b",
    r"visit (?:us|our (?:website|site|store|shop|forums?)|the (?:original|full) \w+)",
    r"sign in\b.*\b(?:to|or)\b",
    r"log ?in (?:to|or) ",
)
_LEAD = (
    r"(?:[\w'\u2019 ]{0,60}, |(?:please|also|now|to|don'?t forget to|be sure to|make sure to"
    r"|remember to|click here to|tap here to|you can) )*"
)
_CALL_TO_ACTION = re.compile(rf"^{_LEAD}(?:{'|'.join(_CALLS)})", re.IGNORECASE)
# Sentences that are not imperatives but are notices all the same.
_NOTICE = re.compile(
    r"\b(?:we|this (?:web)?site|our (?:web)?site|(?:this|the) website) uses? cookies\b"
    r"|\bby (?:continuing to (?:use|browse)|using|browsing) (?:this|our|the) (?:web)?site\b"
    r"|^the post .+ appeared first on "
    # WordPress's own translations of it: de, fr, es, it, nl, pt
    r"|^der beitrag .+ erschien zuerst auf |^l['\u2019]article .+ est apparu en premier sur "
    r"|^la entrada .+ se public\u00f3 primero en |^l['\u2019]articolo .+ sembra essere il primo su "
    r"|^het bericht .+ verscheen eerst op |^o post .+ apareceu primeiro em "
    r"|\boriginally published (?:in|on|at) .*\b(?:medium|blog|(?:web)?site|\.com|\.org)\b"
    r"|^(?:\u00a9|\(c\)|copyright (?:\u00a9|\(c\)|\d{4}))|\ball rights reserved\b"
    r"|^\[if .+ original (?:article|post)\.?\]$",
    re.IGNORECASE,
)
# Link labels and list headings that stand alone on a line.
_BARE_LABEL = re.compile(
    r"^(?:read more|read on|more|continue reading|keep reading|learn more|find out more"
    r"|see more|view more|show more|full story|full article|permalink|comments?|\d+ comments?"
    r"|no comments|leave a (?:comment|reply)|view comments|share|share this|tweet|print|email"
    r"|like this|like loading|advertisement|advertising|advert|sponsored(?: content)?"
    r"|paid content|promoted|related|related (?:stories|articles|posts|coverage|content|news"
    r"|reading|topics)|more (?:stories|news|from \w+(?: \w+)?|on this (?:story|topic)|like this)"
    r"|recommended(?: for you| stories| reading)?|you (?:may|might) also like|most (?:read"
    r"|popular|viewed|shared)|trending(?: now| stories)?|read next|top stories|latest (?:news"
    r"|stories|headlines|posts)|popular (?:posts|stories)|link comments|link|skip to (?:main )?"
    r"content|back to top|weiterlesen|mehr lesen|lire la suite|lire plus|leer más|läs mer"
    r"|lees meer|continua a leggere|czytaj więcej|читать далее)$",
    re.IGNORECASE,
)


class _Kind(Enum):
    """What one line of a text looks like."""

    BLANK = "blank"
    BOILERPLATE = "boilerplate"  # known to repeat across the feed or site: cut at the ends
    REPEATED = "repeated"  # repeats within the text: cut only where the furniture is dense
    CALL = "call"  # a call to action or a notice: cut anywhere
    HEADLINE = "headline"  # short, capitalised, no closing punctuation
    LABEL = "label"  # three words or fewer, no sentence
    BODY = "body"


_EDGE_KINDS = frozenset(_Kind) - {_Kind.BODY}
_ANCHOR_KINDS = frozenset({_Kind.BOILERPLATE, _Kind.CALL, _Kind.REPEATED})


# A feed's lines are normalised once for its repeated lines and again for cleaning.
@functools.lru_cache(maxsize=8192)
def normalise_line(line: str) -> str:
    """A line as compared for boilerplate: its case-folded words, without punctuation."""
    return " ".join(_WORDS.findall(line.casefold()))


def repeated_lines(
    texts: Iterable[str], *, min_count: int = 3, min_share: float = 0.5
) -> frozenset[str]:
    """Normalised lines found in at least ``min_count`` different texts and in at least
    ``min_share`` of them: the boilerplate of one feed's entries or one site's pages."""
    distinct = {text.strip() for text in texts if text.strip()}
    counts: Counter[str] = Counter()
    for text in distinct:
        counts.update({normalise_line(line) for line in text.splitlines()} - {""})
    needed = max(min_count, min_share * len(distinct))
    return frozenset(line for line, count in counts.items() if count >= needed)


def repeated_edges(
    texts: Iterable[str], *, min_count: int = 3, min_share: float = 0.05
) -> frozenset[str]:
    """Normalised sentences (or lines) and opening or closing parenthesised groups found in
    at least ``min_count`` different texts and ``min_share`` of them, which ``clean_text``
    trims from a text's two ends: a feed's outlet labels, bylines and sign-offs.
    ``PARENTHESISED_TAILS`` is in it when most texts end on a parenthesised group (a tag
    list), whatever it says, and the sentences are counted without it; ``CLOSING_LABELS``
    when most close on a label or byline after a sentence."""
    distinct = [t for t in {text.strip() for text in texts} if t]
    needed = max(min_count, min_share * len(distinct))
    tails = sum(bool(_PAREN_TAIL.search(text)) for text in distinct)
    habits = {PARENTHESISED_TAILS} if _is_habit(tails, len(distinct), min_count) else set()
    counts: Counter[str] = Counter()
    for text in distinct:
        body = _PAREN_TAIL.sub("", text) if habits else text
        counts.update(_edge_keys(body) - {""})
    labels = counts.pop(CLOSING_LABELS, 0)
    habits |= {CLOSING_LABELS} if _is_habit(labels, len(distinct), min_count) else set()
    return frozenset({key for key, count in counts.items() if count >= needed} | habits)


# A feed that cuts its entries' text at a length: this many of them, and a fifth, end within
# _CUT_SLACK characters of the longest, which is at least _CUT_MIN_LENGTH long.
_CUT_COUNT, _CUT_SHARE, _CUT_SLACK, _CUT_MIN_LENGTH = 5, 0.2, 3, 100


def cut_length(texts: Iterable[str]) -> int | None:
    """The length from which the feed's texts are cut short by the publisher, without a mark
    ("...the passing of Ralph Ba": Giant Bomb's teasers stop at 255 characters), or None:
    entries of whole texts do not pile up at their longest."""
    lengths = [len(t) for t in {text.strip() for text in texts} if t]
    if not lengths or max(lengths) < _CUT_MIN_LENGTH:
        return None
    cap = max(lengths) - _CUT_SLACK
    piled = sum(length >= cap for length in lengths)
    return cap if piled >= max(_CUT_COUNT, _CUT_SHARE * len(lengths)) else None


def _is_habit(count: int, texts: int, min_count: int) -> bool:
    """Whether a shape seen at the end of ``count`` of ``texts`` is the feed's habit."""
    return count >= min_count and count * 2 >= texts


def _edge_keys(text: str) -> set[str]:
    """Every sentence and line of a text (one that recurs anywhere in the feed's texts is
    trimmed once it is at an end), its opening and closing parenthesised groups, and
    ``CLOSING_LABELS`` if it closes on a label."""
    pieces = _SENTENCE_BREAK.split(text)
    keys = {normalise_line(piece) for piece in pieces}
    if len(pieces) > 1 and _is_label(pieces[-1]):
        keys.add(CLOSING_LABELS)
    for pattern in (_PAREN_HEAD, _PAREN_TAIL):
        if match := pattern.search(text):
            keys.add(normalise_line(match["inside"]))
    return keys


def _trim_edges(text: str, boilerplate: frozenset[str]) -> str:
    """``text`` without a wire label in front, and without the first and last sentences and
    parenthesised groups found in ``boilerplate`` (``repeated_edges``), never down to nothing."""
    text = _WIRE_LABEL.sub("", text, count=1)
    is_label_left = True  # one closing label (a byline) goes, not line after line of them
    while True:
        trimmed, was_label = _trim_once(text, boilerplate, is_label_left=is_label_left)
        trimmed = trimmed.strip()
        if trimmed == text or not trimmed:
            return _without_stock_pieces(text, boilerplate)
        text, is_label_left = trimmed, is_label_left and not was_label


def _without_stock_pieces(text: str, boilerplate: frozenset[str]) -> str:
    """``text`` without the sentences and lines of ``_STOCK_WORDS`` words or more that the
    feed repeats anywhere ("See the release notes for details.", "Ending theme by Jonathan
    Mann", "Wir fassen zusammen."), nor such a sentence joined on by a semicolon; never down
    to nothing. A shorter repeated line (a heading: "Key points") stays."""
    kept: list[list[str]] = []  # [piece, the break after it]
    dropped = False
    start = 0
    for match in [*_SENTENCE_BREAK.finditer(text), None]:
        end = match.end() if match else len(text)
        piece = text[start : match.start() if match else len(text)]
        gap = text[match.start() : end] if match else ""
        if _is_stock(piece, boilerplate):
            dropped = True
            if kept:  # the wider break stays: a line or paragraph break is not lost
                space = gap.lstrip(_CLOSERS)  # its closing quote goes with it
                kept[-1][1] = max(kept[-1][1], space, key=lambda g: g.count("\n"))
        else:
            shorter = _without_stock_clause(piece, boilerplate)
            dropped |= shorter != piece
            kept.append([shorter, gap])
        start = end
    if not dropped:
        return text
    return "".join(piece + gap for piece, gap in kept).strip() or text


def _is_stock(piece: str, boilerplate: frozenset[str]) -> bool:
    """A stock sentence or line of the feed, with a parenthesised aside after it or a word
    in front of it or not ("Ending theme by Jonathan Mann (a brief return of the Summer 2014
    remix)", "Special ending theme by Jonathan Mann!")."""
    words = normalise_line(_PAREN_TAIL.sub("", piece)).split()
    if len(words) < _STOCK_WORDS:
        return False
    with_one_more = len(words) > _STOCK_WORDS and " ".join(words[1:]) in boilerplate
    return " ".join(words) in boilerplate or with_one_more


def _without_stock_clause(sentence: str, boilerplate: frozenset[str]) -> str:
    """``sentence`` ended where a stock sentence of the feed was joined on with a semicolon:
    "...bug fixes; see the release notes for details." -> "...bug fixes."."""
    head, semicolon, clause = sentence.rpartition("; ")
    if not (semicolon and head.strip() and _is_stock(clause, boilerplate)):
        return sentence
    mark = _CLOSING_MARKS.search(clause.rstrip())
    return head.rstrip() + (mark[0] if mark else "")


def _trim_once(text: str, boilerplate: frozenset[str], *, is_label_left: bool) -> tuple[str, bool]:
    """``text`` with one boilerplate piece off an edge, and whether it was an unknown label."""
    tail = _PAREN_TAIL.search(text)
    if tail and (PARENTHESISED_TAILS in boilerplate or _is_known(tail["inside"], boilerplate)):
        return text[: tail.start()], False
    head = _PAREN_HEAD.search(text)
    if head and _is_known(head["inside"], boilerplate):
        return text[head.end() :], False
    breaks = list(_SENTENCE_BREAK.finditer(text))
    last = text[breaks[-1].end() :] if breaks else ""
    if last and (_is_known(last, boilerplate) or is_call_to_action(last)):
        return text[: breaks[-1].start()], False
    # A byline sits before a feed's tag list too: "Ein Test von Ingo Pakalski (Google)".
    signs = CLOSING_LABELS in boilerplate or PARENTHESISED_TAILS in boilerplate
    if last and is_label_left and signs and _is_label(last):
        return text[: breaks[-1].start()], True
    if breaks and _is_known(text[: breaks[0].start()], boilerplate):
        return text[breaks[0].end() :], False
    return text[: len(text) - len(_closing_phrase(text, boilerplate))], False


def _closing_phrase(text: str, boilerplate: frozenset[str]) -> str:
    """The words closing ``text`` that the feed sends as a line or sentence of their own,
    when they are glued on after a bracket, a number or a mark rather than ending a sentence
    ("eyesight.zip ( 1,34 мегабайт ) Обсуждение ведем здесь"); else ""."""
    if not boilerplate:
        return ""
    words = list(_WORDS.finditer(text))
    for k in range(min(len(words) - 1, _PHRASE_WORDS), _STOCK_WORDS - 1, -1):
        start = words[-k].start()
        phrase, before = text[start:], text[:start].rstrip()
        if phrase[:1].isupper() and not before[-1:].isalpha() and _is_known(phrase, boilerplate):
            return phrase
    return ""


def _is_known(piece: str, boilerplate: frozenset[str]) -> bool:
    return normalise_line(piece) in boilerplate


def _is_label(piece: str) -> bool:
    """A closing label or byline: a few words, no closing punctuation ("Medscape News
    Canada", "Reuters Health Information", "Ein Test von Ingo Pakalski")."""
    words = normalise_line(piece).split()
    return 1 <= len(words) <= _LABEL_WORDS and not _SENTENCE_END.search(piece.strip())


def is_call_to_action(line: str) -> bool:
    """Whether a line asks the reader to subscribe, follow, share, read on, accept cookies...
    or is such a notice or link label, rather than saying something."""
    if len(line.split()) > 31:  # cheap first: a paragraph is no call to action
        return False
    simple = _SPACE.sub(" ", _LEADING_MARKS.sub("", line.strip())).casefold()
    if not simple or len(simple.split()) > 30:
        return False
    if _BARE_LABEL.match(normalise_line(simple)):
        return True
    return bool(_CALL_TO_ACTION.match(simple) or _NOTICE.search(simple))


def clean_text(
    text: str, *, title: str | None = None, boilerplate: frozenset[str] = frozenset()
) -> str:
    """``text`` without site boilerplate. ``boilerplate``: normalised lines known to repeat
    across the feed or site (``repeated_lines``); ``title``: where a raw page's story starts.
    Kept lines are left as they were."""
    original = text.splitlines()
    lines = _drop_dateline(original)
    kinds = _classify(lines, boilerplate)
    drop = {i for i, kind in enumerate(kinds) if kind is _Kind.CALL}
    if _Kind.BODY in kinds:
        drop |= _header(lines, kinds, title) | _footer(kinds)
    else:  # all furniture-like (a teaser, a list of links): no header or footer to tell apart
        drop |= {i for i, kind in enumerate(kinds) if kind is _Kind.BOILERPLATE}
    if not drop and lines == original:
        return _trim_edges(text.strip(), boilerplate)  # clean text is never reformatted
    kept = [line for i, line in enumerate(lines) if i not in drop]
    return _trim_edges(_BLANK_RUN.sub("\n\n", "\n".join(kept)).strip(), boilerplate)


def split_headline(text: str, title: str = "") -> tuple[str, str]:
    """(headline, body) of a cleaned text: a first line that repeats the title, or, with no
    title, a headline-like first line, is the headline and not part of the body."""
    first, _, rest = text.strip().partition("\n")
    if not rest.strip():
        return title, text.strip()
    if title and normalise_line(first) == normalise_line(title):
        return title, rest.strip()
    if not title and _is_headline(first):
        return first.strip(), rest.strip()
    return title, text.strip()


def _drop_dateline(lines: list[str]) -> list[str]:
    """Without a leading dateline: a labelled date, an ISO date before a capital, or a line
    that is only a date."""
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    match = _DATELINE.match(lines[first]) if first is not None else None
    if first is None or match is None:
        return lines
    rest = lines[first][match.end() :]
    is_iso_before_headline = rest[:1].isupper() and re.fullmatch(_ISO_DATE, match["date"], re.I)
    if not (match["label"] or not rest.strip() or is_iso_before_headline):
        return lines
    return [*lines[:first], *([rest] if rest.strip() else []), *lines[first + 1 :]]


def _classify(lines: Sequence[str], boilerplate: frozenset[str]) -> list[_Kind]:
    normalised = [normalise_line(line) for line in lines]
    counts = Counter(normalised)
    return [
        _kind(line, norm, boilerplate, counts[norm])
        for line, norm in zip(lines, normalised, strict=True)
    ]


def _kind(line: str, norm: str, boilerplate: frozenset[str], count: int) -> _Kind:
    if not line.strip():
        return _Kind.BLANK
    if is_call_to_action(line):
        return _Kind.CALL
    if norm in boilerplate:
        return _Kind.BOILERPLATE
    if count >= _SELF_REPEATS and len(norm.split()) >= 3:
        return _Kind.REPEATED
    if _is_headline(line):
        return _Kind.HEADLINE
    if len(line.split()) <= 3 and not _SENTENCE_END.search(line.strip()):
        return _Kind.LABEL
    return _Kind.BODY


def _is_headline(line: str) -> bool:
    """Short, starts with a capital or digit, no closing punctuation (a "?" may close it)."""
    stripped = line.strip()
    words = stripped.split()
    if not 4 <= len(words) <= 20 or "://" in stripped:
        return False
    if _SENTENCE_END.search(stripped) or _NO_HEADLINE_END.search(stripped):
        return False
    first = stripped.lstrip("'\"\u2018\u201c\u00ab")[:1]
    return first.isupper() or first.isdigit()


def _header(lines: Sequence[str], kinds: Sequence[_Kind], title: str | None) -> set[int]:
    """The lines before the story: those before the title's line when only furniture comes
    before it, else the furniture before the first body line up to its last boilerplate line."""
    prefix = 0
    while kinds[prefix] in _EDGE_KINDS:
        prefix += 1
    if title and (wanted := normalise_line(title)):
        for i in range(prefix + 1):
            if normalise_line(lines[i]) == wanted:
                return set(range(i))
    anchors = [i for i in range(prefix) if kinds[i] in _ANCHOR_KINDS]
    return _furniture(kinds, range(anchors[-1] + 1), anchors[-1]) if anchors else set()


def _footer(kinds: Sequence[_Kind]) -> set[int]:
    """The lines after the story: the furniture after the last body line, from its first
    boilerplate line on, so that a "more stories" list goes with the prompts around it."""
    suffix = len(kinds)
    while kinds[suffix - 1] in _EDGE_KINDS:
        suffix -= 1
    anchors = [i for i in range(suffix, len(kinds)) if kinds[i] in _ANCHOR_KINDS]
    return _furniture(kinds, range(anchors[0], len(kinds)), anchors[0]) if anchors else set()


def _furniture(kinds: Sequence[_Kind], zone: range, key: int) -> set[int]:
    """All of ``zone`` when it is led by a call to action or dense with boilerplate; else only
    its known boilerplate: a repeated heading does not make the list under it furniture."""
    anchors = sum(kinds[i] in _ANCHOR_KINDS for i in zone)
    lines = sum(kinds[i] is not _Kind.BLANK for i in zone)
    if kinds[key] is _Kind.CALL or anchors * _DENSE_SHARE >= lines:
        return set(zone)
    return {i for i in zone if kinds[i] is _Kind.BOILERPLATE}


def extract_article(
    html: str | bytes,
    url: str,
    *,
    title: str | None = None,
    boilerplate: frozenset[str] = frozenset(),
) -> str | None:
    """The cleaned main text of an article page (trafilatura, which never fetches here), or
    None when the page is over ``MAX_ARTICLE_HTML_SIZE`` or holds no article."""
    if not html or len(html) > MAX_ARTICLE_HTML_SIZE:
        return None
    # Imported here: it costs ~150 ms, and clean_text's callers never need it.
    import trafilatura

    extracted = trafilatura.extract(
        html,
        url=url,
        output_format="txt",
        include_comments=False,
        include_tables=False,  # cells come out as fragments, no use to a summary
        include_images=False,
        include_links=False,
        deduplicate=False,  # its cache is module-global: results would depend on past calls
        with_metadata=False,
    )
    if not extracted:
        return None
    text = clean_text(extracted, title=title, boilerplate=boilerplate)
    return text if _is_article(text) else None


def article_image(html: str | bytes, url: str) -> str | None:
    """The image an article page names for itself (og:image, twitter:image, schema.org's
    image), as written: maybe relative. trafilatura's metadata reader, which never fetches."""
    if not html or len(html) > MAX_ARTICLE_HTML_SIZE:
        return None
    import trafilatura.metadata  # as in extract_article: only when a page is read

    # extensive=False: no date guessing from the page's text, which this does not need
    document = trafilatura.metadata.extract_metadata(html, default_url=url, extensive=False)
    return document.image or None


def _is_article(text: str) -> bool:
    """Long enough to be more than a teaser, with at least one real sentence."""
    return len(text) >= _MIN_ARTICLE_CHARS and any(
        len(line) >= _MIN_SENTENCE_CHARS and _SENTENCE_END.search(line)
        for line in text.splitlines()
    )
