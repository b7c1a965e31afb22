"""Turn the article page the project grew from into a one-item RSS feed for the demo.

Usage: python examples/make_seed_feed.py ../shared/data/seed/article-page-2021-01-14.txt

The page is kept whole, boilerplate included (sign-up prompts, other headlines), because
that is what real feeds and pages carry; the first line holds its date and headline. The
link uses the reserved .invalid domain: the page's own address is not known.
"""

import html
import sys
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

page = Path(sys.argv[1])
first, *body = page.read_text(encoding="utf-8").splitlines()
_, day, headline = first.strip().split(" ", 2)
published = datetime.fromisoformat(f"{day}T09:00:00+03:00")
paragraphs = "".join(f"<p>{html.escape(line)}</p>" for line in body if line.strip())
feed = f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0">
<channel>
<title>Seed article</title>
<link>https://digest.invalid/</link>
<description>The article page digest grew from ({page.name})</description>
<item>
<title>{escape(headline)}</title>
<link>https://digest.invalid/seed/{page.stem}</link>
<guid isPermaLink="false">seed:{page.stem}</guid>
<pubDate>{format_datetime(published)}</pubDate>
<category>World</category>
<description>{escape(paragraphs)}</description>
</item>
</channel>
</rss>
"""
out = Path(__file__).parent / "feeds" / "seed-article.xml"
out.write_text(feed, encoding="utf-8")
print(f"wrote {out}")
