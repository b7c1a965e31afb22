"""Language: a story's text -> its ISO 639-1 code, offline, by py3langid. Pure.

py3langid's bundled model (no download) scores the headline and the start of the text; its
normalised probability says how sure it is. A feed's own declaration (RSS ``<language>``,
Atom ``xml:lang``, JSON Feed ``language``) is often wrong or absent, and the detector is
often unsure on a short headline ("306: My Watch Has Ended" -> "pcm" at 0.10), so:

* detected with probability >= ``SURE`` wins, whatever the feed declares: a feed of
  diary entries declares nothing and holds Czech, Persian and English ones;
* else the feed's declaration, when it names a language;
* else the detection when it reaches ``LIKELY``, else unknown (None).

Measured over ../shared/data/feeds (3,294 stories of 162 feeds): of the 2,123 stories of feeds
that declare a language, no sure detection disagrees with the declaration, while 18% are
unsure, mostly short English headlines ("Featured Advertiser", podcast episode titles) scored
as Nigerian Pidgin, Norwegian or Zulu: the declaration decides those. Feeds that declare
nothing give 49 stories of unknown language ("Photo", "v3.8.3").
"""

from __future__ import annotations

import functools
import re
from typing import Any

SURE = 0.9  # detected probability at which the text outweighs the feed's declaration
LIKELY = 0.5  # below it, with nothing declared, the language is unknown
_WORDS = 80  # of the text after the headline: enough to decide, cheap to score
_CODE = re.compile(r"^([a-z]{2,3})(?:[-_][a-z0-9]{1,8})*$")


def declared_language(value: object) -> str | None:
    """The primary language of a declaration ("en-US", "de_DE", "fr" -> "en", "de", "fr"),
    None for anything that is not a language tag ("English", "", None)."""
    if not isinstance(value, str):
        return None
    match = _CODE.match(value.strip().lower())
    return match[1] if match else None


def story_language(title: str, text: str, *, declared: str | None = None) -> str | None:
    """The language of a headline and its text: sure detection, else the declared one, else
    a likely detection, else None."""
    sample = " ".join([title, *text.split()[:_WORDS]]).strip()
    code, probability = _identifier().classify(sample) if sample else ("", 0.0)
    if probability >= SURE:
        return str(code)
    if declared is not None:
        return declared
    return str(code) if probability >= LIKELY else None


@functools.cache
def _identifier() -> Any:
    """py3langid's model, loaded once per process (0.7 s) and only when first asked."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
