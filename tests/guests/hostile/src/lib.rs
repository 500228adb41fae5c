//! A deliberately hostile adapter, for the sandbox tests. What it does depends on the
//! message text it is given:
//!
//! - `loop`: spins forever (wall-time limit);
//! - `bomb`: allocates until something stops it (memory limit);
//! - `huge`: returns ~24 MiB of output (output-size limit);
//! - `panic`: panics (trap);
//! - `http-ungranted`: asks for a connection it was not granted (`denied`);
//! - `http-granted`: asks for what it was granted (reaches the host's outbound);
//! - `escape:<port>`: tries the environment, the file system and the network
//!   (a TCP connect to 127.0.0.1:<port>), and reports what it could reach;
//! - `http-header`: a granted request carrying a method-override header;
//! - `http-operation`: `GET /Patient/$export` where only `/Patient/*` is granted;
//! - `state`: counts calls in host state (state survives; instance memory does not);
//! - `print`: writes to stdout and stderr;
//! - any message containing a `ZZPANIC` segment: panics (a real HL7 message that
//!   this adapter cannot handle, for quarantine/reprocess tests);
//! - anything else: a normal, small answer.

use ehrgate_sdk::host::{self, HttpRequest};
use ehrgate_sdk::{Adapter, AdapterError, AdapterInfo, Hl7Input, Output};

pub struct Hostile;

static mut CALLS_IN_THIS_INSTANCE: u32 = 0;

impl Adapter for Hostile {
    fn describe() -> AdapterInfo {
        AdapterInfo { name: "hostile".into(), vendor: "test".into(), version: "0.1.0".into(), ..Default::default() }
    }

    fn map_hl7(msg: &Hl7Input) -> Result<Output, AdapterError> {
        // Instance memory must not survive between calls: this is 1 in every call.
        let calls = unsafe {
            CALLS_IN_THIS_INSTANCE += 1;
            CALLS_IN_THIS_INSTANCE
        };
        let mut out = Output::default();
        if msg.raw.contains("\rZZPANIC") || msg.raw.contains("\nZZPANIC") {
            panic!("hostile adapter cannot handle ZZPANIC segments");
        }
        match msg.raw.trim() {
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "huge" => {
                let chunk = "x".repeat(1 << 20);
                for _ in 0..24 {
                    out.resources.push(chunk.clone());
                }
            }
            "panic" => panic!("hostile adapter panics on purpose"),
            "http-ungranted" | "http-granted" | "http-header" | "http-operation" => {
                let what = msg.raw.trim();
                let connection = if what == "http-ungranted" { "billing" } else { "ehr" };
                let path = if what == "http-operation" { "/Patient/$export" } else { "/Patient/123" };
                let headers = if what == "http-header" { vec![("X-HTTP-Method-Override".to_string(), "DELETE".to_string())] } else { vec![] };
                let resp = host::http_send(HttpRequest {
                    connection: connection.into(),
                    method: "GET".into(),
                    path: path.into(),
                    headers,
                    ..Default::default()
                })
                .map_err(|e| AdapterError::Transient(format!("http: {e}")))?;
                out.warn(format!("status {}", resp.status));
            }
            text if text.starts_with("escape:") => {
                let port = &text["escape:".len()..];
                out.warn(format!("env vars: {}", std::env::vars().count()));
                out.warn(format!("args: {}", std::env::args().count()));
                out.warn(format!("read_dir /: {}", std::fs::read_dir("/").is_ok()));
                out.warn(format!("read_dir .: {}", std::fs::read_dir(".").is_ok()));
                out.warn(format!("tcp connect: {}", std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok()));
                let mut buf = String::new();
                let n = std::io::stdin().read_line(&mut buf).unwrap_or(0);
                out.warn(format!("stdin bytes: {n}"));
            }
            "state" => {
                let n = host::state_get("calls").map(|v| u32::from_le_bytes(v.try_into().unwrap_or([0; 4]))).unwrap_or(0) + 1;
                host::state_set("calls", &n.to_le_bytes()).map_err(AdapterError::Transient)?;
                out.warn(format!("state calls: {n}"));
                out.warn(format!("instance calls: {calls}"));
                host::counter_add("state-calls", 1);
                out.warn(format!("config mode: {}", host::config_get("mode").unwrap_or_default()));
            }
            "print" => {
                println!("hello from stdout");
                eprintln!("hello from stderr");
            }
            _ => out.resources.push(format!("{{\"resourceType\":\"Basic\",\"id\":\"ok-{calls}\"}}")),
        }
        Ok(out)
    }
}

ehrgate_sdk::export_adapter!(Hostile);
