//! Shared by the end-to-end tests: a running `ehrgate serve` (every line it
//! prints is collected), work directories, and SQL over the lake through the CLI.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub struct WorkDir(pub PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn workdir(name: &str) -> WorkDir {
    let d = std::env::temp_dir().join(format!("ehrgate-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    WorkDir(d)
}

pub fn ehrgate(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ehrgate")).current_dir(dir).args(args).output().expect("run ehrgate");
    assert!(out.status.success(), "ehrgate {args:?} failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    out
}

pub fn sql(dir: &Path, query: &str) -> Vec<serde_json::Value> {
    let out = ehrgate(dir, &["sql", query, "--format", "json"]);
    text(&out.stdout).lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

pub fn count(dir: &Path, query: &str) -> u64 {
    sql(dir, query)[0]["n"].as_u64().unwrap()
}

/// GET `path` on the admin server: (status, body).
pub fn admin_get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// One unlabelled sample of `/metrics` (`ehrgate_units_committed_total`), read as
/// text (tests/ops.rs checks the exposition with Prometheus's own parser).
pub fn metric(port: u16, name: &str) -> f64 {
    let (status, body) = admin_get(port, "/metrics", None);
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} is not on /metrics:\n{body}"))
}

/// A running `ehrgate serve`; every line it prints (stdout and stderr) arrives on
/// `lines`.
pub struct Gateway {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Gateway {
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Gateway {
        Self::start_limited(dir, env, None)
    }

    /// Started under `ulimit -n nofile` (soft and hard), as a service manager
    /// might set it.
    pub fn start_limited(dir: &Path, env: &[(&str, &str)], nofile: Option<u32>) -> Gateway {
        let mut cmd = match nofile {
            None => Command::new(env!("CARGO_BIN_EXE_ehrgate")),
            Some(n) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), env!("CARGO_BIN_EXE_ehrgate")]);
                c
            }
        };
        cmd.current_dir(dir).args(["serve", "--config", "ehrgate.toml"]).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.env("EHRGATE_LOG", "warn,ehrgate_ingest=info,deltalake_core=error,buoyant_kernel=off,delta_kernel=off");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start ehrgate serve");
        let (tx, lines) = mpsc::channel();
        for stream in [Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(child.stderr.take().unwrap())] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut g = Gateway { child, lines, seen: Vec::new() };
        g.wait_for("ehrgate: ready", Duration::from_secs(120));
        g
    }

    /// Wait for a line containing `needle` (an event the gateway reports).
    pub fn wait_for(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?} within {within:?}; the gateway printed:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// The port a listener announced (`... on 127.0.0.1:PORT ...`).
    pub fn port(&mut self, what: &str) -> u16 {
        let line = self.wait_for(what, Duration::from_secs(5));
        let at = line.find("127.0.0.1:").expect("an address") + "127.0.0.1:".len();
        line[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the final statistics line.
    pub fn stop(self) -> String {
        self.stop_with_output().0
    }

    /// SIGTERM; the final statistics line and everything the gateway printed.
    pub fn stop_with_output(mut self) -> (String, Vec<String>) {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok);
        let line = self.wait_for("ehrgate: stopped", Duration::from_secs(120));
        let status = self.child.wait().unwrap();
        assert!(status.success(), "serve exited with {status}");
        self.seen.extend(self.lines.try_iter());
        (line, std::mem::take(&mut self.seen))
    }
}

/// A gateway a failed test leaves behind is killed, not left serving.
impl Drop for Gateway {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn stat(line: &str, name: &str) -> u64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words.iter().position(|w| *w == name).unwrap_or_else(|| panic!("no {name} in {line}"));
    words[i + 1].parse().unwrap()
}


/// `ehrgate.toml` in `dir`: one MLLP listener `adt` on a free port, routed to the
/// reference adapter, quick lake commits, and `extra`.
pub fn config(dir: &Path, extra: &str) {
    std::fs::write(
        dir.join("ehrgate.toml"),
        format!("[lake]\ncommit_age_ms = 100\n\n[[listeners.mllp]]\nname = \"adt\"\nbind = \"127.0.0.1:0\"\nadapter = \"reference\"\n{extra}"),
    )
    .unwrap();
}

/// The independent MLLP peer (python-hl7's asyncio client).
pub fn peer_script() -> PathBuf {
    ehrgate_testkit::repo_root().join("tests/peers/mllp_client.py")
}

