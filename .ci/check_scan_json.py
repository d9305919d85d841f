#!/usr/bin/env python3
"""Reads `conbool scan --json` lines on stdin and checks them with Python's own JSON parser:
every line is one object with the documented keys, every rule listed in `rules` has its entry in
`hits`, and every hit (sub-rules of meta rules included) was located. Exit 1 on the first
problem, naming the file."""
import json
import sys

KEYS = {"file", "spam", "flag", "score", "rules", "hits"}


def check_hit(file, hit, seen):
    for key in ("rule", "target"):
        if not isinstance(hit.get(key), str):
            sys.exit(f"{file}: a hit without {key!r}: {hit}")
    if hit.get("located") is False:
        sys.exit(f"{file}: {hit['rule']} ({hit['target']}) not located")
    if "match" not in hit and "note" not in hit:
        sys.exit(f"{file}: {hit['rule']}: neither match nor note: {hit}")
    seen[0] += 1
    for part in hit.get("parts", []):
        check_hit(file, part, seen)


def main():
    files, seen = 0, [0]
    for n, line in enumerate(sys.stdin, 1):
        try:
            obj = json.loads(line)
        except ValueError as e:
            sys.exit(f"line {n}: not JSON ({e}): {line[:200]!r}")
        missing = KEYS - obj.keys()
        if missing:
            sys.exit(f"line {n}: missing {sorted(missing)}: {line[:200]!r}")
        file = obj["file"]
        if [h["rule"] for h in obj["hits"]] != obj["rules"]:
            sys.exit(f"{file}: hits {[h['rule'] for h in obj['hits']]} for rules {obj['rules']}")
        for hit in obj["hits"]:
            check_hit(file, hit, seen)
        files += 1
    if files == 0:
        sys.exit("no output from conbool scan --json")
    print(f"conbool scan --json: {files} files, {seen[0]} hits, every one located")


main()
