"""The plugin manager: built-ins first, then installed packages' ``digest`` entry points."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

from digest import builtin_summarizers, hookspecs

if TYPE_CHECKING:
    from digest.summarize import Summarizer

DEFAULT_PLUGINS = (builtin_summarizers,)


def make_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    """A fresh manager; tests build their own instead of sharing a global one."""
    manager = pluggy.PluginManager("digest")
    manager.add_hookspecs(hookspecs)
    for plugin in DEFAULT_PLUGINS:
        manager.register(plugin)
    if load_entry_points:
        manager.load_setuptools_entrypoints("digest")
    return manager


def summarizer_factories(
    manager: pluggy.PluginManager,
) -> dict[str, Callable[..., Summarizer]]:
    """Every registered summarizer by name."""
    factories: dict[str, Callable[..., Summarizer]] = {}

    def register(name: str, factory: Callable[..., Any]) -> None:
        factories[name] = factory

    manager.hook.register_summarizers(register=register)
    return factories
