"""Masking cost: `ehrgate sql` over N silver Observations read as stored and through
the safe-harbor profile, side by side in one run; and export throughput.

    python3 bench/masking_cost.py [EHRGATE_BIN] [ROWS] [RUNS]

Writes ROWS synthetic Observations (NDJSON, 200 patients) into a temporary lake with
`ehrgate ingest`, then alternates RUNS times:
  stored   ehrgate sql --as plain  "<query>"   (principal with no profile)
  masked   ehrgate sql --as masked "<query>"   (safe-harbor: the resource JSON through
                                                 the element rules, ids pseudonymised,
                                                 timestamps to the year)
where the query reads every masked column (sum of lengths) so that no mask is skipped,
and prints the medians and their ratio. Then one `ehrgate export --profile safe-harbor`
of the table and its rate. Process start and table open are in both sides.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/ehrgate")
ROWS = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 3

QUERY = ("SELECT sum(length(id)) + sum(length(patient_ref)) + sum(length(resource)) + "
         "coalesce(sum(length(source_system)), 0) + count(effective_at) + count(ingested_at) AS n FROM silver_observation")


def observation(i):
    p = i % 200
    return {
        "resourceType": "Observation", "id": f"obs-{i}", "status": "final",
        "meta": {"lastUpdated": "2026-11-01T10:00:00Z", "source": f"urn:ehrgate:LAB/HOSP#CTRL{i}"},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}]},
        "subject": {"reference": f"Patient/pat-{p}", "display": f"DOE, JANE {p}"},
        "effectiveDateTime": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T08:30:00Z",
        "identifier": [{"system": "urn:oid:1.2.3", "value": f"ACC{i}"}],
        "valueQuantity": {"value": 13.5 + (i % 20) / 10, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"},
        "note": [{"text": "drawn at bedside"}],
    }


def run(args, cwd, env):
    t0 = time.perf_counter()
    out = subprocess.run([BIN, *args], cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"ehrgate {args[0]} failed:\n{out.stderr}")
    return dt, out.stdout


def main():
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, BENCH_PSEUDONYM_KEY="bench-key", EHRGATE_LOG="warn")
        with open(os.path.join(d, "ehrgate.toml"), "w") as f:
            f.write('[governance]\npseudonym_key = "env:BENCH_PSEUDONYM_KEY"\n'
                    '[[governance.principals]]\nname = "plain"\ntables = ["silver_*"]\n'
                    '[[governance.principals]]\nname = "masked"\ntables = ["silver_*"]\nprofile = "safe-harbor"\n')
        src = os.path.join(d, "obs.ndjson")
        with open(src, "w") as f:
            for i in range(ROWS):
                f.write(json.dumps(observation(i)) + "\n")
        t, _ = run(["ingest", src], d, env)
        print(f"ingested {ROWS} Observations in {t:.1f} s")
        stored, masked = [], []
        for _ in range(RUNS):
            t, a = run(["sql", "--as", "plain", QUERY, "--format", "json"], d, env)
            stored.append(t)
            t, b = run(["sql", "--as", "masked", QUERY, "--format", "json"], d, env)
            masked.append(t)
        s, m = statistics.median(stored), statistics.median(masked)
        print(f"sql over {ROWS} rows, median of {RUNS}: stored {s:.2f} s, safe-harbor {m:.2f} s, ratio {m / s:.2f}x")
        print(f"  ({ROWS / m:,.0f} rows/s masked; answers {a.strip()} vs {b.strip()})")
        t, out = run(["export", "--profile", "safe-harbor", "--to", os.path.join(d, "export"), "--tables", "silver_observation"], d, env)
        print(f"export of {ROWS} rows (NDJSON + Parquet): {t:.1f} s, {ROWS / t:,.0f} resources/s including process start")


if __name__ == "__main__":
    main()
