#!/usr/bin/env python3
"""Rewrites every usage block in docs/*.md (a fenced block starting with 'Description:') with the
current output of the command's --help. tests/Replicator.Tests/DocsTests.cs checks they agree."""
import pathlib, re, subprocess, sys

root = pathlib.Path(__file__).resolve().parent.parent
block = re.compile(r"```\n(Description:\n.*?)```", re.S)

def help_for(text):
    command = re.search(r"Usage:\n  replicator ([a-z-]+(?: [a-z-]+)?) \[", text).group(1)
    out = subprocess.run([str(root / "replicator"), *command.split(), "--help"], capture_output=True, text=True, check=True).stdout
    return "```\n" + out.rstrip("\n") + "\n```"

for page in sorted((root / "docs").glob("*.md")):
    old = page.read_text()
    new = block.sub(lambda m: help_for(m.group(1)), old)
    if new != old:
        page.write_text(new)
        print(f"updated {page.relative_to(root)}", file=sys.stderr)
