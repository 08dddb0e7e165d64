"""`dlproxy scan` for data at rest: files, folders, stdin, staged changes, diffs and git history.

Pure: imports nothing from mitmproxy (a test holds it). `command.run` is the CLI entry; `runner.Scanner`
locates every occurrence; `diff` parses unified diffs and `git log -p`; `walk` picks the files of a folder;
`suppress` and `report` mark and print the results.
"""
