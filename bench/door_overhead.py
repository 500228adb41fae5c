"""Agent door overhead: what a read through the door adds on top of the EHR call.

    python3 bench/door_overhead.py [EHRGATE_BIN] [CALLS]

Starts `ehrgate sandbox` and `ehrgate serve` with an agent door (in a temporary
directory), then alternates, CALLS times each, in one run on the same patients:
  direct  GET {sandbox}/Observation?patient=P&category=vital-signs (with a token)
  door    POST {door}/v1/tools/latest_vitals {"patient": P}
and prints p50/p90/p99 of both and of the difference of their medians. The door's
call includes the connection (throttle, token cache, breaker), the adapter's
map-fhir in its wasm sandbox, the vitals reduction and the audit row.
"""

import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/ehrgate"
CALLS = int(sys.argv[2]) if len(sys.argv) > 2 else 500


def line_with(proc, needle):
    while True:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"process ended before printing {needle!r}")
        if needle in line:
            return line


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    work = tempfile.mkdtemp(prefix="ehrgate-door-bench-")
    sb = subprocess.Popen([BIN, "sandbox", "--port", "0", "--patients", "50"], stdout=subprocess.PIPE, text=True)
    line = line_with(sb, "http://")
    base = line[line.index("http://"):].strip()
    out = subprocess.run([BIN, "door", "key"], capture_output=True, text=True, check=True).stdout
    key = next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("key:"))
    key_hash = next(l.split(":", 1)[1].strip().strip('"') for l in out.splitlines() if l.startswith("key_hash:"))
    with open(os.path.join(work, "ehrgate.toml"), "w") as f:
        f.write(f"""
[[connections]]
name = "ehr"
base_url = "{base}"
auth = {{ kind = "client_credentials", client_id = "ehrgate-demo", client_secret = "env:BENCH_EHR_SECRET", token_url = "{base}/token", scopes = ["system/*.read"] }}
rate = {{ per_second = 10000, burst = 1000 }}

[[listeners.mllp]]
bind = "127.0.0.1:0"

[agent_door]
bind = "127.0.0.1:0"
connections = {{ ehr = "epic" }}

[[agent_door.clients]]
id = "bench"
key_hash = "{key_hash}"
connections = ["ehr"]
read = ["Observation"]
""")
    env = dict(os.environ, BENCH_EHR_SECRET="sandbox-demo-secret")
    gw = subprocess.Popen([BIN, "serve"], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = line_with(gw, "agent door on")
        door = line[line.index("http://"):].split()[0]
        basic = base64.b64encode(b"ehrgate-demo:sandbox-demo-secret").decode()
        req = urllib.request.Request(base + "/token", data=b"grant_type=client_credentials&scope=system%2F*.read",
                                     headers={"Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"})
        token = json.loads(urllib.request.urlopen(req).read())["access_token"]

        def direct(p):
            r = urllib.request.Request(f"{base}/Observation?patient={p}&category=vital-signs&_count=100", headers={"Authorization": "Bearer " + token})
            urllib.request.urlopen(r).read()

        def via_door(p):
            r = urllib.request.Request(door + "/v1/tools/latest_vitals", data=json.dumps({"patient": p}).encode(),
                                       headers={"Authorization": "Bearer " + key, "X-Ehrgate-Purpose": "TREAT", "Content-Type": "application/json"})
            urllib.request.urlopen(r).read()

        patients = [f"patient-{i:04d}" for i in range(50)]
        for p in patients[:10]:  # warm: tokens, wasm instances, connections
            direct(p)
            via_door(p)
        d_ms, g_ms = [], []
        for i in range(CALLS):
            p = patients[i % len(patients)]
            for fn, acc in ((direct, d_ms), (via_door, g_ms)) if i % 2 == 0 else ((via_door, g_ms), (direct, d_ms)):
                t = time.perf_counter()
                fn(p)
                acc.append((time.perf_counter() - t) * 1000)
        print(f"agent door overhead, {CALLS} calls each, interleaved ({BIN})")
        print(f"{'':24}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}")
        for name, xs in (("EHR directly", d_ms), ("through the door", g_ms)):
            print(f"{name:24}{pct(xs, 50):>10.2f}{pct(xs, 90):>10.2f}{pct(xs, 99):>10.2f}")
        diffs = [g - d for g, d in zip(g_ms, d_ms)]
        print(f"{'added (pairwise)':24}{pct(diffs, 50):>10.2f}{pct(diffs, 90):>10.2f}{pct(diffs, 99):>10.2f}")
        print(f"median ratio door/direct: {statistics.median(g_ms) / statistics.median(d_ms):.2f}x")
    finally:
        gw.terminate()
        gw.wait()
        sb.terminate()
        sb.wait()


if __name__ == "__main__":
    main()
