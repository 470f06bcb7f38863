"""Extract the hosted dryAPI operations from research/dryapi_openapi_summary.txt into test data.

Writes tests/data/hosted_openapi_operations.json: per operation its body fields (name, required) by
content type, its query parameter names and the top-level properties of its 200 response. The summary
lives in the shared research folder, which CI may lack; the JSON is committed so the test never needs it.

    python scripts/extract_hosted_openapi.py [SUMMARY] [OUTPUT]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = ROOT.parent / "shared" / "research" / "dryapi_openapi_summary.txt"
OUTPUT = ROOT / "tests" / "data" / "hosted_openapi_operations.json"

_OPERATION = re.compile(r"^=== (GET|POST|PUT|PATCH|DELETE) (\S+)")
_BODY = re.compile(r"^  body (\S+):")
_FIELD = re.compile(r"^    - (\S+?)( \*REQ\*)?:")
_PARAM = re.compile(r"^  param (\w+):(\S+) req=(True|False)")
_RESPONSE = re.compile(r"^  resp 200 \S+: schema=(.*)$")


def extract(text: str) -> list[dict]:
    operations: list[dict] = []
    body: dict | None = None
    for line in text.splitlines():
        if match := _OPERATION.match(line):
            op = {"method": match[1], "path": match[2], "bodies": {}, "query": {}, "response_properties": []}
            operations.append(op)
            body = None
        elif match := _BODY.match(line):
            body = op["bodies"].setdefault(match[1], {})
        elif (match := _FIELD.match(line)) and body is not None:
            body[match[1]] = {"required": bool(match[2])}
        elif match := _PARAM.match(line):
            if match[1] == "query":
                op["query"][match[2]] = {"required": match[3] == "True"}
        elif match := _RESPONSE.match(line):
            op["response_properties"] = sorted(json.loads(match[1]).get("properties", {}))
    return sorted(operations, key=lambda op: (op["path"], op["method"]))


def main(argv: list[str]) -> None:
    summary = Path(argv[1]) if len(argv) > 1 else SUMMARY
    output = Path(argv[2]) if len(argv) > 2 else OUTPUT
    if not summary.exists():
        sys.exit(f"{summary} not found: the committed {output.name} stays as it is")
    operations = extract(summary.read_text())
    output.write_text(json.dumps({"source": "dryapi_openapi_summary.txt", "operations": operations}, indent=1) + "\n")
    print(f"{len(operations)} operations -> {output}")


if __name__ == "__main__":
    main(sys.argv)
