"""Where the bundled data lives: the town-hall flow (``flows/``) and the voice manifest (``voices/``).

In a checkout (tests, ``pip install -e .``) they are the top-level ``flows/`` and
``voices/`` folders next to ``callbot/``, the files a town clerk edits. A wheel
(``pip install .``, the Docker image) ships the same files as the data-only
directories ``callbot/bundled_flows`` and ``callbot/bundled_voices``
(``[tool.setuptools]`` in pyproject.toml), found here with ``importlib.resources``.
Settings default to these (``flow``, ``voices_dir``); a town points ``CALLBOT_FLOW``
or ``CALLBOT_VOICES_DIR`` at its own files.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Literal

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The checkout root when running from a source tree; in an installed wheel, site-packages."""

Bundle = Literal["flows", "voices"]


def in_source_tree() -> bool:
    """True when ``callbot`` is imported from a checkout (its ``pyproject.toml`` and ``flows/`` beside it)."""
    return (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "flows" / "mairie.yaml").is_file()


def packaged_dir(name: Bundle) -> Path:
    """The copy shipped in the wheel: ``callbot/bundled_<name>`` (wheels install unzipped: a real folder)."""
    return Path(str(files("callbot").joinpath(f"bundled_{name}")))


def bundled_dir(name: Bundle) -> Path:
    """The checkout's ``flows/``/``voices/`` in a source tree, else the packaged copy."""
    return PROJECT_ROOT / name if in_source_tree() else packaged_dir(name)


def default_flow() -> Path:
    return bundled_dir("flows") / "mairie.yaml"


def default_voices_dir() -> Path:
    return bundled_dir("voices")


def bundled_voice_manifest() -> Path:
    return bundled_dir("voices") / "voices.yaml"


def inside_package(path: Path) -> bool:
    """``path`` is inside the installed ``callbot`` package (site-packages: nothing should be written there)."""
    return Path(path).expanduser().resolve().is_relative_to(Path(str(files("callbot"))).resolve())
