//! Test support shared by the crates' tests and the bench:
//! builds the wasm guest components once, and finds the shared sample data.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

/// The shared data folder (`../shared` beside the checkout), or `EHRGATE_SHARED`.
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("EHRGATE_SHARED").map(PathBuf::from).unwrap_or_else(|| repo_root().join("../shared"));
    assert!(
        dir.join("data/hl7").is_dir(),
        "shared sample data not found at {} (set EHRGATE_SHARED to the folder holding data/hl7)",
        dir.display()
    );
    dir
}

/// The HL7v2 sample files, sorted.
pub fn hl7_samples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(shared_dir().join("data/hl7"))
        .expect("read shared/data/hl7")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "hl7"))
        .collect();
    v.sort();
    v
}

/// The cargo target directory in use.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"))
}

/// Where guest components are built (shared with host/ehrgate's build script).
pub fn guest_target_dir() -> PathBuf {
    target_dir().join("ehrgate-guests")
}

/// The guest crates built for wasm32-wasip2 by [`guest`].
pub const GUESTS: &[&str] = &["ehrgate-adapter-reference", "ehrgate-guest-hostile", "ehrgate-guest-future-contract", "ehrgate-guest-reference-next", "ehrgate-adapter-epic", "ehrgate-adapter-oracle-health", "ehrgate-adapter-meditech", "ehrgate-adapter-mirth", "ehrgate-adapter-rhapsody", "ehrgate-adapter-cloverleaf"];

/// Path of a guest component (crate name with `-` or `_`), building all guests once
/// per process with the `guest` profile.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        // The same guest target dir as host/ehrgate's build script, so the SDK is
        // compiled for wasm once.
        cmd.current_dir(repo_root())
            .args(["build", "--quiet", "--profile", "guest", "--target", "wasm32-wasip2", "--target-dir"])
            .arg(guest_target_dir());
        for g in GUESTS {
            cmd.args(["-p", g]);
        }
        let status = cmd.status().expect("run cargo to build the guest components");
        assert!(status.success(), "building the wasm32-wasip2 guests failed (is the target installed? `rustup target add wasm32-wasip2`)");
    });
    let path = guest_target_dir().join("wasm32-wasip2/guest").join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.is_file(), "guest component {} was not built", path.display());
    path
}

/// A child process killed (and reaped) when dropped.
pub struct Killer(pub Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// moto's S3 server (installed by scripts/test) on a free loopback port, its writes
/// made atomic as S3's are (`tests/s3_server.py`: moto's own server can let two
/// racing conditional puts both win, and so lose a Delta commit), with bucket
/// `lake` created: the server, its endpoint, and the environment a client needs.
pub fn start_s3() -> (Killer, String, Vec<(&'static str, String)>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let server = Command::new("python3")
        .arg(repo_root().join("tests/s3_server.py"))
        .args(["127.0.0.1", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto's S3 server (scripts/test installs moto[server])");
    let server = Killer(server);
    let env = vec![
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing-secret".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ENDPOINT_URL", endpoint.clone()),
    ];
    let create = "import boto3,time,sys\n\
        for i in range(400):\n\
        \x20   try:\n\
        \x20       boto3.client('s3').create_bucket(Bucket='lake'); sys.exit(0)\n\
        \x20   except Exception as e:\n\
        \x20       time.sleep(0.05)\n\
        sys.exit('S3 server did not come up')\n";
    let st = Command::new("python3").args(["-c", create]).envs(env.iter().map(|(k, v)| (*k, v.as_str()))).status().unwrap();
    assert!(st.success(), "bucket created");
    (server, endpoint, env)
}
