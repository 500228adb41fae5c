#!/usr/bin/env python3
"""Validate NDJSON FHIR R4 resources with an independent implementation.

Usage: fhir_validate.py [FILE...]     (no FILE, or "-": read standard input)

Each non-blank line must be one JSON resource. It is validated with the
`fhir.resources` (8.x) model class for its resourceType, from the R4B package
(R4B's structures are R4's for the resources ehrgate writes; 8.x ships no plain R4
package). FHIR also forbids empty strings, arrays and objects: those are reported
too. One line per error: `<source>:<line>: <Type>/<id>: <where>: <what>` (values are
never printed: resources may hold PHI). Last line: `validated N resources, M errors`.
Exit status 1 if there is any error or no resource at all, 2 on a usage problem.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Iterator, TextIO

try:
    from fhir.resources.R4B import get_fhir_model_class
except ImportError:  # pragma: no cover - environment problem
    print("fhir.resources is not installed: pip install 'fhir.resources>=8,<9'", file=sys.stderr)
    sys.exit(2)

from pydantic import ValidationError


def empties(value: Any, path: str = "") -> Iterator[str]:
    """Paths of empty strings / arrays / objects and nulls (FHIR forbids them)."""
    if value is None:
        yield path or "/"
    elif isinstance(value, str):
        if not value.strip():
            yield path or "/"
    elif isinstance(value, list):
        if not value:
            yield path or "/"
        for i, v in enumerate(value):
            yield from empties(v, f"{path}/{i}")
    elif isinstance(value, dict):
        if not value:
            yield path or "/"
        for k, v in value.items():
            yield from empties(v, f"{path}/{k}")


def loc_text(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(resource)"


def validate_stream(name: str, stream: TextIO) -> tuple[int, int]:
    resources = errors = 0

    def report(lineno: int, what: str, message: str) -> None:
        nonlocal errors
        errors += 1
        print(f"{name}:{lineno}: {what}: {message}")

    for lineno, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            report(lineno, "-", f"not JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(obj, dict):
            report(lineno, "-", "not a JSON object")
            continue
        resources += 1
        rtype = obj.get("resourceType")
        rid = obj.get("id")
        what = f"{rtype}/{rid}" if isinstance(rtype, str) and isinstance(rid, str) else f"{rtype!s}/?"
        if not isinstance(rtype, str):
            report(lineno, what, "no resourceType")
            continue
        for path in empties(obj):
            report(lineno, what, f"{path}: empty value (FHIR forbids empty strings, arrays, objects and null)")
        try:
            model = get_fhir_model_class(rtype)
        except (ValueError, KeyError):
            report(lineno, what, f"unknown resourceType {rtype}")
            continue
        try:
            model.model_validate(obj)
        except ValidationError as e:
            for err in e.errors(include_input=False, include_url=False):
                report(lineno, what, f"{loc_text(err['loc'])}: {err['msg']} [{err['type']}]")
    return resources, errors


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    sources = argv or ["-"]
    total = bad = 0
    for src in sources:
        if src == "-":
            n, m = validate_stream("<stdin>", sys.stdin)
        else:
            try:
                with open(src, encoding="utf-8") as f:
                    n, m = validate_stream(src, f)
            except OSError as e:
                print(f"{src}: cannot read: {e.strerror}", file=sys.stderr)
                return 2
        total += n
        bad += m
    print(f"validated {total} resources, {bad} errors")
    return 1 if bad or total == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
