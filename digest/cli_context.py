"""What every command shares: the global options (``--config``, ``--debug``), the settings
and runtime they lead to, error translation, and stopping on a signal."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import click

from digest.errors import ConfigError, DigestError
from digest.interrupt import StopRequest, exit_now, exit_on_further_signals, redelivering
from digest.logs import log_in_zone

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from digest.config import Settings, SummarizeSettings
    from digest.runtime import Runtime, StoreAccess

P = ParamSpec("P")
R = TypeVar("R")


def translate_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Print a DigestError as one clear message (a traceback only with --debug)."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except DigestError as exc:
            if is_debug():
                raise
            error_class = (
                _ConfigClickError if isinstance(exc, ConfigError) else click.ClickException
            )
            raise error_class(str(exc)) from exc
        except KeyboardInterrupt:
            # Commands that keep what they did (collect, send) handle signals themselves;
            # the others are read-only or all-or-nothing. Click would say "Aborted!", exit 1.
            click.echo("\ninterrupted (SIGINT): stopped", err=True)
            sys.exit(128 + signal.SIGINT)

    return wrapper


class _ConfigClickError(click.ClickException):
    exit_code = 2


def load_command_settings() -> Settings:
    """The settings the command's ``--config`` names; log times in their zone from now on."""
    from digest.config import find_config_path, load_settings

    settings = load_settings(find_config_path(_config_option()))
    log_in_zone(settings.tz)
    return settings


def load_summarize_settings() -> SummarizeSettings:
    """The ``[summarize]`` settings, or the defaults when no settings file is named or found."""
    from digest.config import SummarizeSettings, find_config_path, load_settings

    path = find_config_path(_config_option())
    if _config_option() is None and not path.is_file():
        return SummarizeSettings()
    return load_settings(path).summarize


def open_runtime(
    settings: Settings, access: StoreAccess = "write"
) -> AbstractContextManager[Runtime]:
    """The command's runtime: its store opened once, as ``access`` says."""
    from digest.runtime import Runtime

    return Runtime.open(settings, access=access)


# The global options, given before the subcommand or after it: both set the context's meta
# (shared by the whole command chain), and the subcommand's own are parsed last, so win.
_CONFIG_KEY = "digest.config"
_DEBUG_KEY = "digest.debug"


def _config_option() -> str | None:
    config: str | None = click.get_current_context().meta.get(_CONFIG_KEY)
    return config


def is_debug() -> bool:
    return bool(click.get_current_context().meta.get(_DEBUG_KEY))


def _remember_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[_CONFIG_KEY] = value


def _remember_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[_DEBUG_KEY] = True
        logging.getLogger().setLevel(logging.DEBUG)


def global_options() -> list[click.Parameter]:
    """``--config`` and ``--debug``, as every command (and the group) accepts them."""
    return [
        click.Option(
            ["--config", "-c"],
            type=click.Path(dir_okay=False),
            expose_value=False,
            callback=_remember_config,
            help="Settings file (default: $DIGEST_CONFIG, then ./settings.toml).",
        ),
        click.Option(
            ["--debug"],
            is_flag=True,
            expose_value=False,
            callback=_remember_debug,
            help="Show tracebacks and debug logging.",
        ),
    ]


class Group(click.Group):
    """A group whose every command and subgroup also takes the global options."""

    group_class = type  # subgroups are Groups too

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.params.extend(global_options())
        super().add_command(cmd, name)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """SIGTERM and SIGINT make a stop request (the work says what it keeps); a second one
    exits at once, with 128 + its number, as the shell reports a process it killed."""
    stop = StopRequest()

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.take_swallowed():
            return stop.request(signum)
        if stop.signum is not None:
            exit_now(signum, frame)
        # Noted before anything else: a second signal can run its handler inside this one
        # (between any two lines), and must find the first already made.
        stop.signum = signum
        os.write(2, f"{name}: {stop.note}\n".encode())
        stop.request(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with redelivering(stop):
            yield stop
    finally:
        if stop.signum is not None:  # the process is on its way out: to the very end
            exit_on_further_signals()
        else:
            for sig, old in previous.items():
                signal.signal(sig, old)
