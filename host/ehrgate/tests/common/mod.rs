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
