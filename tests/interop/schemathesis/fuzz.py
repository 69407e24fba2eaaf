"""Schema-driven fuzzing of a live Tessera with schemathesis, from its own /openapi.json.

Run by tests/interop/run (after the client checks, so that fuzzed logins cannot throttle the
accounts they use), which exports:
  INTEROP_ISSUER        where the server listens
  INTEROP_FUZZ_SECRET   the secret of client `fuzz` (every grant, --introspect), sent as HTTP Basic
Optional:
  INTEROP_FUZZ_EXAMPLES test cases per operation and phase (default 30)
  INTEROP_FUZZ_SEED     a seed to replay a run (default: a fresh one, printed)

The document is downloaded first and fuzzed as a file against --url, because schemathesis leaves
out the operation that serves the schema it was given by URL, and GET /openapi.json is an
operation like the others. The checks: no 5xx (`not_a_server_error`), and every response's status,
Content-Type, headers and JSON body as documented. Prints `PASS name` or `FAIL name: why` per
operation, plus one line for the document itself; exits 1 if any failed.
"""

import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request

ISSUER = os.environ["INTEROP_ISSUER"]
SECRET = os.environ["INTEROP_FUZZ_SECRET"]
EXAMPLES = int(os.environ.get("INTEROP_FUZZ_EXAMPLES", "30"))
SEED = int(os.environ.get("INTEROP_FUZZ_SEED") or random.randrange(2**31))
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
]
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
TIMEOUT = 240

failed = 0


def report(ok, name, why=""):
    global failed
    if ok:
        print(f"PASS {name}", flush=True)
    else:
        failed += 1
        print(f"FAIL {name}: {why}", flush=True)


def main():
    with tempfile.TemporaryDirectory(prefix="tessera-fuzz-") as work:
        fuzz(work)


def fuzz(work):
    spec_path = os.path.join(work, "openapi.json")
    with urllib.request.urlopen(f"{ISSUER}/openapi.json", timeout=10) as response:
        spec = json.load(response)
    with open(spec_path, "w", encoding="utf-8") as out:
        json.dump(spec, out)
    version = str(spec.get("openapi", ""))
    operations = sorted(
        f"{method.upper()} {path}"
        for path, item in spec.get("paths", {}).items()
        for method in METHODS
        if method in item
    )
    report(
        version.startswith("3.1.") and bool(operations),
        "schemathesis: /openapi.json is an OpenAPI 3.1 document with operations",
        f"openapi {version!r}, {len(operations)} operations",
    )

    report_dir = os.path.join(work, "report")
    schemathesis = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    command = [
        schemathesis, "run", spec_path,
        "--url", ISSUER,
        "--max-examples", str(EXAMPLES),
        "--seed", str(SEED),
        "--checks", ",".join(CHECKS),
        "--auth", f"fuzz:{SECRET}",
        "--request-timeout", "10",
        "--generation-database", "none",
        "--no-color",
        "--report", "json",
        "--report-dir", report_dir,
    ]
    print(f"schemathesis: {len(operations)} operations, {EXAMPLES} examples, seed {SEED}", flush=True)
    started = time.monotonic()
    try:
        run = subprocess.run(
            command, cwd=work, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        report(False, "schemathesis: finished", f"still running after {TIMEOUT}s")
        return
    reports = [f for f in os.listdir(report_dir)] if os.path.isdir(report_dir) else []
    if not reports:
        print(run.stdout + run.stderr, flush=True)
        report(False, "schemathesis: finished", f"exit {run.returncode} without a report")
        return
    with open(os.path.join(report_dir, reports[0]), encoding="utf-8") as f:
        result = json.load(f)

    # Failures name the operations they were found on.
    why = {op: [] for op in operations}
    for failure in result.get("failures", []):
        for op in failure.get("operations", []):
            why.setdefault(op, []).append(
                f"{failure.get('code')} {failure.get('title')} x{failure.get('count')}"
            )
    for error in result.get("errors", []):
        text = json.dumps(error)
        matched = [op for op in operations if op in text]
        for op in matched or operations:
            why.setdefault(op, []).append(f"error: {text[:300]}")
    tested = result.get("operations", {})
    for op in sorted(why):
        report(not why[op], f"schemathesis: {op}", "; ".join(why[op]) + f" (seed {SEED})")
    cases = result.get("test_cases", {})
    all_tested = tested.get("tested") == len(operations)
    report(
        run.returncode == 0 and all_tested,
        f"schemathesis: {cases.get('generated')} generated cases on "
        f"{tested.get('tested')}/{len(operations)} operations in "
        f"{time.monotonic() - started:.0f}s",
        f"exit {run.returncode}, operations {tested}",
    )
    if failed:
        # The human-readable output holds the failing requests with curl lines to replay them.
        print(run.stdout[-12000:] + run.stderr[-4000:], flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as err:  # noqa: BLE001 - reported as a failed check, not a crash
        report(False, "schemathesis: run", repr(err))
    sys.exit(1 if failed else 0)
