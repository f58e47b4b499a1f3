"""Cargo workspaces: which Cargo.lock a workspace member builds with.

A member of a workspace has no Cargo.lock (nor target folder) of its own: both
are at the workspace root, found as cargo finds it: ``package.workspace`` when
set, else the nearest folder above whose Cargo.toml has a ``[workspace]`` table
whose ``members`` (globs) list the member and whose ``exclude`` does not.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path


def lock_folder(root: Path) -> Path:
    """The folder whose Cargo.lock builds the crate in ``root``.

    ``root`` itself when it has one; for a workspace member, the workspace root
    (``package.workspace``, else the nearest folder above whose Cargo.toml has
    a ``[workspace]`` listing it). ``root`` when neither is found.
    """
    if (root / "Cargo.lock").is_file():
        return root
    found = workspace_root(root)
    return found if found is not None else root


def workspace_root(member: Path) -> Path | None:
    """The root of the Cargo workspace ``member`` belongs to, if any."""
    manifest = _toml(member / "Cargo.toml")
    package = manifest.get("package")
    if isinstance(manifest.get("workspace"), dict):
        return member
    explicit = package.get("workspace") if isinstance(package, dict) else None
    if isinstance(explicit, str):
        root = (member / explicit).resolve()
        workspace = _toml(root / "Cargo.toml").get("workspace")
        return root if isinstance(workspace, dict) else None
    for folder in member.resolve().parents:
        workspace = _toml(folder / "Cargo.toml").get("workspace")
        if isinstance(workspace, dict):
            return folder if _is_member(folder, workspace, member.resolve()) else None
    return None


def _toml(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _is_member(root: Path, workspace: Mapping[str, object], member: Path) -> bool:
    def listed(key: str) -> bool:
        patterns = workspace.get(key)
        if not isinstance(patterns, list):
            return False
        return any(
            member in (p.resolve() for p in root.glob(str(pattern)))
            for pattern in patterns
        )

    return listed("members") and not listed("exclude")
