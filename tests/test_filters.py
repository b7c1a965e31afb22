"""Keyword filters: whole words and phrases in any script, case-insensitive; regular
expressions only when asked for, checked when the settings load; the global filter and a
feed's own both apply, and each list's count says how many stories it removed."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.config import load_settings
from digest.errors import ConfigError
from digest.filters import filter_stories
from digest.models import FeedSource, FilterCount, KeywordRules, Story
from tests.conftest import make_story, write_settings

A = "https://a.example.org/feed"
B = "https://b.example.org/feed"


def _kept(rules: KeywordRules, *titles: str, text: str = "") -> list[str]:
    stories = [make_story(n, title=title, text=text) for n, title in enumerate(titles)]
    kept, _ = filter_stories(stories, rules)
    return [story.title for story in kept]


def test_a_plain_term_is_a_whole_word_in_any_case() -> None:
    rules = KeywordRules(exclude=("art",))
    titles = ("ART fair opens", "The art.", "Party at the museum", "Artikel 5", "Smart move")
    assert _kept(rules, *titles) == ["Party at the museum", "Artikel 5", "Smart move"]
    assert _kept(rules, "Smart art show", "Smartart") == ["Smartart"]  # the word after a non-word


def test_words_in_other_scripts_are_whole_words_too() -> None:
    rules = KeywordRules(include=("köln", "straße", "東京"))
    titles = (
        "KÖLN im Schnee",  # upper case umlaut
        "Ko\u0308ln decomposed",  # o + combining diaeresis, as some feeds write it
        "Kölner Dom",  # a longer word: not the word köln
        "Die STRASSE ist gesperrt",  # ß case-folds to ss
        "Straßenbahn fährt wieder",  # part of a word
        "東京都で地震",  # no spaces between words in Japanese: found inside the text
        "Köln's mayor",  # next to punctuation: still the word
    )
    assert _kept(rules, *titles) == [
        "KÖLN im Schnee",
        "Ko\u0308ln decomposed",
        "Die STRASSE ist gesperrt",
        "東京都で地震",
        "Köln's mayor",
    ]


def test_a_phrase_matches_its_words_in_a_row_across_any_spacing() -> None:
    rules = KeywordRules(include=("climate change",))
    titles = ("Climate  change talks", "Climate\nChange", "climate of change", "climate changes")
    assert _kept(rules, *titles) == ["Climate  change talks", "Climate\nChange"]


def test_a_term_may_start_or_end_with_punctuation() -> None:
    assert _kept(KeywordRules(include=("c++",)), "Learn C++ today", "C++23 ships", "Learn C") == [
        "Learn C++ today"
    ]


def test_regular_expressions_only_when_asked_for() -> None:
    titles = ("Colour of the year", "Color of the year", "colou?r theory")
    assert _kept(KeywordRules(include=("colou?r",)), *titles) == ["colou?r theory"]
    regex = KeywordRules(include=("colou?r",), is_regex=True)
    assert _kept(regex, *titles) == list(titles[:2])
    assert _kept(KeywordRules(exclude=(r"^breaking\b",), is_regex=True), "BREAKING: x", "y") == [
        "y"
    ]


def test_fields_choose_headline_or_text() -> None:
    story = make_story(1, title="Markets today", text="Sponsored by a bank.")
    on_headline = KeywordRules(exclude=("sponsored",), fields=("headline",))
    on_text = KeywordRules(exclude=("sponsored",), fields=("text",))
    assert filter_stories([story], on_headline)[0] == (story,)
    assert filter_stories([story], on_text)[0] == ()


def test_global_and_feed_filters_both_apply_and_each_list_counts_its_removals() -> None:
    stories = [
        make_story(1, feed_url=A, title="Rust 2.0 released"),
        make_story(2, feed_url=A, title="Python news"),  # A's include: removed
        make_story(3, feed_url=A, title="Rust gift guide"),  # A's exclude: removed
        make_story(4, feed_url=B, title="Python news"),  # A's rules do not apply to B
        make_story(5, feed_url=B, title="Sponsored: Rust"),  # global exclude
        make_story(6, feed_url=A, title="Sponsored Python"),  # global and A's: counted once
        make_story(7, feed_url="https://gone.example.org/feed", title="Old feed"),  # global only
    ]
    feeds = [
        FeedSource(
            url=A, name="Feed A", keywords=KeywordRules(include=("rust",), exclude=("gift",))
        ),
        FeedSource(url=B, name="Feed B"),
    ]
    kept, counts = filter_stories(stories, KeywordRules(exclude=("sponsored",)), feeds)
    assert [s.story_id for s in kept] == ["sha256:1", "sha256:4", "sha256:7"]
    assert counts == (
        FilterCount(rule="exclude", removed=2),
        FilterCount(rule="include", feed_url=A, feed_name="Feed A", removed=1),
        FilterCount(rule="exclude", feed_url=A, feed_name="Feed A", removed=1),
    )
    assert [c.label for c in counts] == [
        "global exclude",
        "feed Feed A include",
        "feed Feed A exclude",
    ]


def test_a_story_must_match_every_include_list_that_applies() -> None:
    feeds = [FeedSource(url=A, keywords=KeywordRules(include=("rust",)))]
    stories = [
        make_story(1, feed_url=A, title="Rust in Linux"),
        make_story(2, feed_url=A, title="Rust compiler"),  # not global's "linux"
        make_story(3, feed_url=A, title="Linux 7.0"),  # not A's "rust"
    ]
    kept, counts = filter_stories(stories, KeywordRules(include=("linux",)), feeds)
    assert [s.title for s in kept] == ["Rust in Linux"]
    assert [(c.label, c.removed) for c in counts] == [
        ("global include", 1),
        (f"feed {A} include", 1),
    ]


def test_no_filter_keeps_every_story_and_counts_nothing() -> None:
    stories: list[Story] = [make_story(n) for n in range(3)]
    assert filter_stories(stories, KeywordRules(), [FeedSource(url=A)]) == (tuple(stories), ())


def _load_error(tmp_path: Path, feed: dict[str, object], filters: dict[str, object]) -> str:
    path = write_settings(tmp_path, [feed], sections={"filters": filters})  # type: ignore[list-item]
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return str(caught.value)


def test_a_bad_regular_expression_is_an_error_naming_file_key_and_pattern(tmp_path: Path) -> None:
    feed = {"url": A, "regex": True, "include": ["rust", "(unclosed"]}
    error = _load_error(tmp_path, feed, {"regex": True, "exclude": ["ok", "x["]})
    assert error.startswith(f"{tmp_path / 'settings.toml'}: 2 problem(s)")
    assert (
        f"[[feeds]] #1 ({A}).include = ['rust', '(unclosed']: '(unclosed' is not a valid " in error
    )
    assert "[filters].exclude = ['ok', 'x[']: 'x[' is not a valid regular expression" in error
    assert "set regex = false to match it as plain words" in error


def test_a_regular_expression_matching_nothing_at_all_and_an_empty_term_are_errors(
    tmp_path: Path,
) -> None:
    error = _load_error(tmp_path, {"url": A, "exclude": [" "]}, {"regex": True, "include": ["a*"]})
    assert "[filters].include = ['a*']: 'a*' matches an empty text" in error
    assert f"[[feeds]] #1 ({A}).exclude = [' ']: an empty term would match every story" in error


def test_settings_give_each_feed_its_filter_and_plain_words_need_no_escaping(
    tmp_path: Path,
) -> None:
    feed: dict[str, object] = {
        "url": A,
        "name": "A",
        "include": ["(unclosed", "C++"],
        "fields": ["headline"],
    }
    path = write_settings(tmp_path, [feed], sections={"filters": {"exclude": ["x["]}})  # type: ignore[list-item]
    settings = load_settings(path)
    assert settings.filters.keywords == KeywordRules(exclude=("x[",))
    (source,) = settings.feed_sources
    assert source.keywords == KeywordRules(include=("(unclosed", "C++"), fields=("headline",))


def test_check_reports_a_bad_regular_expression_before_anything_runs(tmp_path: Path) -> None:
    feed = {"url": A, "regex": True, "exclude": ["[a-"]}
    path = write_settings(tmp_path, [feed])  # type: ignore[list-item]
    result = CliRunner().invoke(cli, ["--config", str(path), "check"])
    assert result.exit_code == 2
    assert f"[[feeds]] #1 ({A}).exclude = ['[a-']: '[a-' is not a valid regular expression" in (
        result.output
    )
