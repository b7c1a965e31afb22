"""What every ``settings.toml`` table model shares: the strict frozen base, and resolving a
path against the settings file's folder (the only I/O-free context validation gets)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo


@dataclass(frozen=True, slots=True)
class SettingsSource:
    """What validating a settings file needs besides its text: the folder its relative paths
    start from, and the addresses read from its ``[delivery].recipients_file``."""

    folder: Path
    file_recipients: tuple[str, ...] = ()


def settings_source(info: ValidationInfo) -> SettingsSource | None:
    """None for sections built in code rather than read from a file: their paths stay as given."""
    return info.context if isinstance(info.context, SettingsSource) else None


def _beside_settings(path: Path, info: ValidationInfo) -> Path:
    source = settings_source(info)
    return source.folder / path.expanduser() if source else path


# A path as written in the settings file: relative to the file's folder, ~ expanded.
SettingsPath = Annotated[Path, AfterValidator(_beside_settings)]


class Section(BaseModel):
    """A table of the settings file: unknown keys are errors, and it never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
