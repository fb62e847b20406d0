#!/usr/bin/env python3
"""Checks that README.md's "Architecture" block describes every top-level folder.

The folders are the top-level directories git tracks (so bazel-* links, .cache/
and other untracked output never count); dot-folders (.ci, .github) are left
out. The described folders are the names the first code block under
"## Architecture" starts a line with, e.g. `common/`; indented continuation
lines name sub-folders and do not count. Prints one line per tracked folder the
block does not describe and per folder it names that git does not track, then
"readme folders: N folders, M undescribed, K missing"; exits 1 on any.
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tracked_folders():
    # -s shows the mode: a top-level submodule (160000) is a folder without a '/'.
    out = subprocess.run(["git", "-C", ROOT, "ls-files", "-s", "-z"], check=True,
                         stdout=subprocess.PIPE).stdout.decode()
    folders = set()
    for entry in filter(None, out.split("\0")):
        mode, _, _, path = entry.split(None, 3)
        top, sep, _ = path.partition("/")
        if (sep or mode == "160000") and not top.startswith("."):
            folders.add(top)
    return folders


def described_folders(readme):
    lines = readme.splitlines()
    try:
        start = lines.index("## Architecture")
    except ValueError:
        sys.exit("readme folders: README.md has no '## Architecture' section")
    block = None
    for i in range(start + 1, len(lines)):
        if lines[i].startswith("## "):
            break
        if lines[i].startswith("```"):
            block = []
            for line in lines[i + 1:]:
                if line.startswith("```"):
                    break
                block.append(line)
            break
    if block is None:
        sys.exit("readme folders: README.md's Architecture section has no code block")
    names = (re.match(r"([A-Za-z0-9_.-]+)/(\s|$)", line) for line in block)
    return {m.group(1) for m in names if m}


def main():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        described = described_folders(f.read())
    tracked = tracked_folders()
    undescribed = sorted(tracked - described)
    missing = sorted(described - tracked)
    for folder in undescribed:
        print(f"readme folders: {folder}/ is tracked, but README.md's Architecture "
              "block does not describe it")
    for folder in missing:
        print(f"readme folders: README.md's Architecture block describes {folder}/, "
              "which git does not track")
    print(f"readme folders: {len(tracked)} folders, {len(undescribed)} undescribed, "
          f"{len(missing)} missing")
    return 1 if undescribed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
