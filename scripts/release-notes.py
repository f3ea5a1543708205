#!/usr/bin/env python3
"""Prints the CHANGELOG.md section of a version: the release notes of its tag.

  scripts/release-notes.py 0.2.0        # the body of `## [0.2.0] - <date>`
  scripts/release-notes.py Unreleased   # the body of `## [Unreleased]`

Exits 1 with a message when the section is missing or empty, so a tag pushed before its
changelog entry fails the release instead of publishing empty notes.
"""
import re
import sys


def section(text, version):
    heading = re.compile(r"^## \[(?P<v>[^\]]+)\]", re.M)
    matches = list(heading.finditer(text))
    for i, m in enumerate(matches):
        if m.group("v") == version:
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            body = text[m.end():end]
            # The heading line's rest (" - 2026-12-06") and the link references at the end.
            body = body.split("\n", 1)[1] if "\n" in body else ""
            body = re.sub(r"^\[[^\]]+\]: \S+\s*$", "", body, flags=re.M)
            return body.strip()
    return None


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    path = sys.argv[2] if len(sys.argv) == 3 else "CHANGELOG.md"
    with open(path, encoding="utf-8") as fh:
        body = section(fh.read(), sys.argv[1])
    if body is None:
        sys.exit(f"release-notes: {path} has no section ## [{sys.argv[1]}]")
    if not body:
        sys.exit(f"release-notes: {path}'s section [{sys.argv[1]}] is empty")
    print(body)


if __name__ == "__main__":
    main()
