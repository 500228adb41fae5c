//! End-to-end: adapter packages through a real OCI registry (the Distribution
//! registry, Debian's `docker-registry`, on 127.0.0.1): push by tag, pull by tag
//! and by digest, byte for byte the signed package; a pinned digest the registry
//! does not serve is refused.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::gateway::*;

struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_registry(dir: &Path) -> (Registry, u16) {
    let bin = which("docker-registry").expect("the OCI registry server `docker-registry` is not installed (Debian: apt-get install docker-registry; scripts/test installs it)");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = dir.join("registry.yml");
    std::fs::write(
        &cfg,
        format!("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n", dir.join("registry-data").display()),
    )
    .unwrap();
    let child = Command::new(bin).arg("serve").arg(&cfg).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let reg = Registry(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the registry did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (reg, port)
}

fn which(name: &str) -> Option<String> {
    let out = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().ok()?;
    out.status.success().then(|| text(&out.stdout).trim().to_string())
}

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ehrgate")).current_dir(dir).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn push_then_pull_by_tag_and_by_digest_and_refuse_a_digest_mismatch() {
    let dir = workdir("oci");
    let (_registry, port) = start_registry(&dir.0);
    let wasm = ehrgate_testkit::guest("ehrgate-guest-reference-next");
    ehrgate(&dir.0, &["adapter", "keygen", "--out", "keys/publisher"]);
    ehrgate(&dir.0, &["adapter", "sign", wasm.to_str().unwrap(), "--key", "keys/publisher.key", "--out", "signed.ehrpkg"]);

    let repo = format!("oci://127.0.0.1:{port}/ehrgate/reference");
    let (code, out, err) = run(&dir.0, &["adapter", "push", "signed.ehrpkg", &format!("{repo}:0.9.0")]);
    assert_eq!(code, 0, "push: {out}\n{err}");
    let digest = out.lines().find_map(|l| l.strip_prefix("digest ")).expect("push prints the digest").to_string();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");

    let original = std::fs::read(dir.0.join("signed.ehrpkg")).unwrap();
    for (what, source, extra) in [
        ("by tag", format!("{repo}:0.9.0"), None),
        ("by digest", format!("{repo}@{digest}"), None),
        ("by tag, digest pinned", format!("{repo}:0.9.0"), Some(digest.clone())),
    ] {
        let out_file = format!("pulled-{}.ehrpkg", what.replace([' ', ','], "-"));
        let mut args = vec!["adapter", "pull", source.as_str(), "--out", out_file.as_str()];
        if let Some(d) = &extra {
            args.extend(["--digest", d.as_str()]);
        }
        let (code, out, err) = run(&dir.0, &args);
        assert_eq!(code, 0, "pull {what}: {out}\n{err}");
        assert!(out.contains(&digest), "pull {what} names the digest: {out}");
        assert_eq!(std::fs::read(dir.0.join(&out_file)).unwrap(), original, "pull {what}: the package, byte for byte");
        let (code, out, _) = run(&dir.0, &["adapter", "verify", &out_file, "--trust", "keys/publisher.pub"]);
        assert_eq!(code, 0, "the pulled package verifies: {out}");
    }

    // Another version pushed under the same tag: a pull pinned to the first
    // digest is refused.
    let mut changed = ehrgate_lifecycle::Package::read(&original, u64::MAX).unwrap();
    changed.signature = None;
    std::fs::write(dir.0.join("unsigned.ehrpkg"), changed.to_bytes()).unwrap();
    let (code, out, err) = run(&dir.0, &["adapter", "push", "unsigned.ehrpkg", &format!("{repo}:0.9.0")]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = run(&dir.0, &["adapter", "pull", &format!("{repo}:0.9.0"), "--digest", &digest, "--out", "moved.ehrpkg"]);
    assert_eq!(code, 1, "a moved tag is refused when the digest is pinned: {out}\n{err}");
    assert!(err.contains("refused (digest-mismatch)") && err.contains(&digest), "{err}");
    assert!(!dir.0.join("moved.ehrpkg").exists(), "nothing written");
    // ... while pulling by the first digest still gets the original.
    let (code, _, err) = run(&dir.0, &["adapter", "pull", &format!("{repo}@{digest}"), "--out", "again.ehrpkg"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(dir.0.join("again.ehrpkg")).unwrap(), original);
}
