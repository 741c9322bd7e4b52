"""The repository's top level holds what the README's layout names, and nothing else.

A stray file once landed at the root in a commit (an empty `o28`): this test names any tracked
top-level entry that the README's "Layout:" paragraph does not name, so the next one fails CI.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from gradelib.cli import REPO


def _layout_names() -> set[str]:
    """The entries named in backquotes in README.md's "Layout:" paragraph, without a trailing slash
    (`.ci/run` names `.ci`)."""
    text = (REPO / "README.md").read_text()
    m = re.search(r"^Layout:(.*?)(?:\n\n|\Z)", text, re.S | re.M)
    assert m, "README.md has no 'Layout:' paragraph naming the top-level entries"
    return {name.strip("/").split("/")[0] for name in re.findall(r"`([^`\s]+)`", m.group(1))}


def _tracked_top_level() -> set[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: no tracked files to compare")
    res = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, text=True, check=True)
    return {path.split("/")[0] for path in res.stdout.split("\0") if path}


def test_every_tracked_top_level_entry_is_named_by_the_readme_layout() -> None:
    stray = sorted(_tracked_top_level() - _layout_names())
    assert not stray, (f"tracked at the repository's top level but not named by README.md's 'Layout:' "
                       f"paragraph: {', '.join(stray)}. Remove it (git rm), or name it there if it belongs.")
