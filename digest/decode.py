"""Decode: a fetched body's bytes -> clean Unicode text for the feed readers. Pure.

A gzip body served without saying so is unwrapped (with a cap against zip bombs). The
encoding is chosen from the BOM, the bytes themselves, the HTTP charset and the XML
declaration, then detection, with a warning when what the feed declared was wrong. For the
XML readers the text loses its declaration, its DOCTYPE (no entity is ever expanded) and the
characters XML forbids.
"""

from __future__ import annotations

import codecs
import re
import zlib

import charset_normalizer

from digest.errors import FeedError

_MAX_GUNZIPPED = 50_000_000


def gunzip(body: bytes, url: str, warnings: list[str]) -> bytes:
    """Unwrap a gzip body served without Content-Encoding, with a cap against zip bombs."""
    if body[:2] != b"\x1f\x8b":
        return body
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, _MAX_GUNZIPPED)
    except zlib.error as exc:
        raise FeedError(f"a gzip body that does not inflate ({exc})", feed_url=url) from exc
    if inflater.unconsumed_tail:
        raise FeedError(f"gzip body inflates past {_MAX_GUNZIPPED:,} bytes", feed_url=url)
    warnings.append("the body was gzip-compressed without saying so (Content-Encoding)")
    return data


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)""")
_HTTP_CHARSET = re.compile(r"""(?i)charset\s*=\s*["']?([A-Za-z0-9._:-]+)""")
_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)
_NON_ASCII = bytes(range(128, 256))
# WHATWG's Encoding Standard: these labels mean the superset on the web (a page "in
# ISO-8859-1" with curly quotes is windows-1252), so the superset is tried first.
_SUPERSETS = {
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
}


def _decode(body: bytes, content_type: str | None) -> tuple[str, str | None]:
    """The body as text, and a warning when its declared encoding was wrong or missing."""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(encoding, "replace"), None
    if wide := _sniff_wide(body[:64]):
        return body.decode(wide, "replace"), None
    if body.isascii():
        return body.decode("ascii"), None
    declared = [m.group(1).decode("ascii") for m in [_XML_ENCODING.match(body)] if m]
    declared += [m.group(1) for m in [_HTTP_CHARSET.search(content_type or "")] if m]
    if (text := _as_utf8(body)) is not None:
        wrong = [d for d in declared if _codec(d) not in (None, "utf-8")]
        return text, f"declared {wrong[0]}, but the bytes are UTF-8" if wrong else None
    for label in declared:
        if (codec := _codec(label)) and (text := _strict(body, codec)) is not None:
            return text, None
    guess = _detect(body)
    what = f"declared {declared[0]}, but" if declared else "no encoding declared;"
    return body.decode(guess, "replace"), f"{what} the bytes read as {guess}"


def _sniff_wide(head: bytes) -> str | None:
    """UTF-16/32 without a BOM, told apart by where the NUL bytes of ASCII markup fall."""
    if b"\0" not in head:
        return None
    for encoding, size in (("utf-32-be", 4), ("utf-32-le", 4), ("utf-16-be", 2), ("utf-16-le", 2)):
        try:
            text = head[: len(head) // size * size].decode(encoding)
        except UnicodeDecodeError:
            continue
        if text.lstrip().startswith("<"):
            return encoding
    return None


def _as_utf8(body: bytes) -> str | None:
    """UTF-8 text, also when a few stray bytes of another encoding slipped in."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    non_ascii = len(body) - len(body.translate(None, _NON_ASCII))
    in_sequences = sum(len(s) for s in _UTF8_SEQUENCE.findall(body))
    # UTF-8 with stray bytes is mostly valid sequences; in legacy text (GB2312, TIS-620,
    # Shift-JIS: 23-34% in the corpus) they are chance, and in Latin or Cyrillic ones, none.
    if non_ascii >= 8 and in_sequences >= 0.6 * non_ascii:
        return body.decode("utf-8", "digest-cp1252")
    return None


def _cp1252_fallback(error: UnicodeError) -> tuple[str, int]:
    """Decode error handler: read an invalid UTF-8 byte as windows-1252."""
    assert isinstance(error, UnicodeDecodeError)
    return error.object[error.start : error.end].decode("cp1252", "replace"), error.end


codecs.register_error("digest-cp1252", _cp1252_fallback)


def _codec(label: str) -> str | None:
    """Python's codec for a declared label; None for unknown ones and UTF-16/32, which
    cannot be right for bytes that are not wide."""
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    return None if name.startswith(("utf-16", "utf-32")) else name


def _strict(body: bytes, codec: str) -> str | None:
    for encoding in dict.fromkeys((_SUPERSETS.get(codec, codec), codec)):
        try:
            return body.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def _detect(body: bytes) -> str:
    """Guess the encoding of bytes that are not UTF-8 and not what they declare."""
    sample = body[:65536]
    if len(body) > len(sample):  # cut at a newline: never inside a multibyte character
        sample = sample[: sample.rfind(b"\n") + 1] or sample
    matches = list(charset_normalizer.from_bytes(sample))
    if not matches:
        return "cp1252"
    best = matches[0]
    tied = [m for m in matches if m.chaos <= best.chaos + 0.01]
    # The detector cannot tell Latin-script code pages apart on a few accents; the web's
    # most common one is the safe pick, and a noisy best guess is no better.
    if best.chaos > 0.1 or any("cp1252" in m.could_be_from_charset for m in tied):
        return "cp1252"
    return str(best.encoding)


# Text for the XML readers

_LEADING_DECLARATION = re.compile(r"^\s*(?:<!--.*?-->\s*)*<\?xml[^>]*>", re.S)
_DOCTYPE = re.compile(r"<!DOCTYPE\b", re.I)
_ELEMENT = re.compile(r"<[A-Za-z_]")
_SUBSET_END = re.compile(r"\]\s*>")
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(body: bytes, content_type: str | None, warnings: list[str]) -> str:
    """The body as text for either XML reader: no declaration, no DOCTYPE, no characters
    that XML forbids."""
    text, warning = _decode(body, content_type)
    if warning:
        warnings.append(warning)
    return _XML_ILLEGAL.sub("", _drop_doctype(_LEADING_DECLARATION.sub("", text.lstrip())))


def _drop_doctype(text: str) -> str:
    """Remove the DOCTYPE and its internal subset, so no entity is ever expanded.

    feedparser keeps "safe" text entities, and its lenient parser expands them without any
    limit: a few kilobytes of `&a;` references become gigabytes. Feeds have no use for a DTD.
    """
    doctype = _DOCTYPE.search(text)
    root = _ELEMENT.search(text)
    if not doctype or not root or doctype.start() > root.start():
        return text
    subset_at, close_at = text.find("[", doctype.end()), text.find(">", doctype.end())
    if 0 <= subset_at < close_at and (end := _SUBSET_END.search(text, subset_at)):
        rest = text[end.end() :]
    else:
        rest = text[close_at + 1 :] if close_at >= 0 else ""
    if "<!ENTITY" in rest[: (m.start() if (m := _ELEMENT.search(rest)) else len(rest))]:
        rest = rest[m.start() :] if m else ""  # a subset that fooled the search above
    return text[: doctype.start()] + rest
