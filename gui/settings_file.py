"""Acquisition settings files, as Micro-Manager's MDA window saves and loads them: the panel's fields as
JSON, marked as the panel's, so that no other tool's file is read as one or replaced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from acquisition_hooks import AcquisitionRequest
from mm_deepz.errors import InputError

#: the key that marks an acquisition settings file as the panel's, and its format's version
SETTINGS_MARK = "mm_deepz_acquisition_settings"
SETTINGS_VERSION = 2
#: the versions read: 1 held the microscope flat (connect, port, phantom ...), as the request reads it still
SETTINGS_VERSIONS_READ = (1, 2)


def _read(path: Path) -> dict[str, Any]:
    """The acquisition settings in a file the panel wrote (its mark left out); :class:`InputError` for
    an unreadable file or another tool's."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path} cannot be read as a settings file: {e}") from e
    if not isinstance(data, dict) or data.pop(SETTINGS_MARK, None) not in SETTINGS_VERSIONS_READ:
        raise InputError(f"{path} is not an mm-deepz acquisition settings file (saved by the panel).")
    return data


def is_settings_file(path: Path) -> bool:
    """Whether ``path`` is an acquisition settings file the panel wrote."""
    try:
        _read(path)
    except InputError:
        return False
    return True


def read_settings_file(path: Path) -> AcquisitionRequest:
    """The acquisition a settings file describes (:class:`InputError` for another tool's file or an
    unreadable one, :class:`SettingsError` naming each value out of range)."""
    return AcquisitionRequest(**_read(path))


def write_settings_file(path: Path, request: AcquisitionRequest) -> None:
    """Write ``request`` to ``path``; a file there that is not a settings file is never replaced."""
    if path.exists() and not is_settings_file(path):
        raise InputError(
            f"{path} is not an mm-deepz settings file: it is never replaced. Choose another name."
        )
    data = {SETTINGS_MARK: SETTINGS_VERSION, **request.model_dump(mode="json")}
    path.write_text(json.dumps(data, indent=2) + "\n")
