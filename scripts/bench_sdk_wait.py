"""Time to result through the real deAPI Python SDK: ``embeddings.create(...)`` then ``job.wait()``, against
``drylocal serve`` with request-status answering at once (``status_hold_seconds = 0``, the baseline) and
with its bounded hold (the default), side by side on the same machine and model.

The SDK runs from its own virtual environment, as its users run it:

    git clone https://github.com/deapi-ai/deapi-python-sdk /tmp/deapi-python-sdk
    python3 -m venv /tmp/venv-sdk && /tmp/venv-sdk/bin/pip install -e /tmp/deapi-python-sdk
    .venv/bin/python scripts/bench_sdk_wait.py --sdk-python /tmp/venv-sdk/bin/python

It prints the median and p90 milliseconds from submit to ``wait()`` returning, per setting, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.harness import ServerProcess  # noqa: E402

# Runs inside the SDK's environment: DEAPI_BASE_URL and DEAPI_API_KEY are the SDK's own settings.
_SDK_RUN = """
import json, statistics, sys, time
from deapi import DeapiClient
client = DeapiClient()
client.embeddings.create(input="warm up", model="MiniLM_L6_v2").wait()
times = []
for i in range(int(sys.argv[1])):
    started = time.perf_counter()
    result = client.embeddings.create(input=f"text {i}", model="MiniLM_L6_v2").wait()
    assert result.status.value == "done", result
    times.append(1000 * (time.perf_counter() - started))
times.sort()
print(json.dumps({"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))]}))
"""


def measure(sdk_python: str, runs: int, hold: str) -> dict:
    with tempfile.TemporaryDirectory() as home:
        server = ServerProcess(Path(home)).start(DRYLOCAL_STATUS_HOLD_SECONDS=hold)
        try:
            env = {"DEAPI_BASE_URL": server.url, "DEAPI_API_KEY": server.key, "PATH": "/usr/bin:/bin"}
            out = subprocess.run([sdk_python, "-c", _SDK_RUN, str(runs)], env=env, capture_output=True, text=True, check=True)
            return json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdk-python", required=True, help="python of a virtual environment with the deapi SDK")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    baseline = measure(args.sdk_python, args.runs, "0")
    held = measure(args.sdk_python, args.runs, "2")
    print(f"{'request-status':<28}{'median ms':>10}{'p90 ms':>10}")
    print(f"{'answers at once (baseline)':<28}{baseline['median_ms']:>10.1f}{baseline['p90_ms']:>10.1f}")
    print(f"{'held up to 2 s (default)':<28}{held['median_ms']:>10.1f}{held['p90_ms']:>10.1f}")
    print(f"ratio (held / baseline, median): {held['median_ms'] / baseline['median_ms']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
