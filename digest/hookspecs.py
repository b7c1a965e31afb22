"""The plugin hooks. Built-in summarizers register through the same hook as third parties."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("digest")
hookimpl = pluggy.HookimplMarker("digest")


@hookspec
def register_summarizers(register: Callable[..., Any]) -> None:
    """Call ``register(name, factory)`` for each summarizer; factory(SummarizeSettings)."""
