//! Shared by the end-to-end tests: the sandbox EHR as a child process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct Sandbox {
    child: Child,
    pub base: String,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ehrgate sandbox --port 0 <args>`; its base URL comes from its stdout, which is
/// drained from then on so it never blocks on a full pipe.
pub fn start_sandbox(args: &[&str]) -> Sandbox {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ehrgate"))
        .args(["sandbox", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the sandbox");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("the sandbox prints its base URL").unwrap();
        if let Some(at) = line.find("http://") {
            break line[at..].trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Sandbox { child, base }
}
pub mod gateway;

/// The sandbox's admin API and a Task search, driven by Python's urllib (a client
/// no code here wrote): `fault SPEC [METHOD PATH_PREFIX]` (a rule, on POST /Task
/// unless said), `clear` (no faults),
/// `stats` (its counters, JSON), `tasks PATIENT` (the sorted codes of that
/// patient's Tasks, JSON).
const SANDBOX_PY: &str = r#"
import base64, json, sys, urllib.request
base, op = sys.argv[1], sys.argv[2]
admin = "/".join(base.split("/", 3)[:3]) + "/_sandbox"
def call(url, data=None, headers={}, method=None):
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(req) as r:
        return r.read()
if op == "fault":
    method, prefix = (sys.argv[4], sys.argv[5]) if len(sys.argv) > 5 else ("POST", "/Task")
    body = json.dumps({"method": method, "path_prefix": prefix, "fault": sys.argv[3]}).encode()
    call(admin + "/faults", body, {"Content-Type": "application/json"})
    print("ok")
elif op == "clear":
    call(admin + "/faults", None, {}, "DELETE")
    print("ok")
elif op == "stats":
    print(call(admin + "/stats").decode())
elif op == "tasks":
    basic = base64.b64encode(b"ehrgate-demo:sandbox-demo-secret").decode()
    tok = json.loads(call(base + "/token", b"grant_type=client_credentials&scope=system%2FTask.read",
        {"Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"}))["access_token"]
    bundle = json.loads(call(base + "/Task?patient=" + sys.argv[3] + "&_count=100", None, {"Authorization": "Bearer " + tok}))
    codes = sorted(e["resource"]["code"]["coding"][0]["code"] for e in bundle.get("entry", []))
    print(json.dumps(codes))
"#;

/// Run [`SANDBOX_PY`] against the sandbox at `base`.
pub fn sandbox_py(base: &str, args: &[&str]) -> String {
    let out = Command::new("python3").args(["-c", SANDBOX_PY, base]).args(args).output().unwrap();
    assert!(out.status.success(), "python {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
