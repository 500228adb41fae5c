//! The demo's live part: the gateway's flow in this process (write-ahead log ->
//! adapters -> lake), one MLLP listener per adapter on 127.0.0.1, and an MLLP client
//! that sends HL7v2 files over real sockets, one message in flight, timing each ACK.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ehrgate_connect::Connections;
use ehrgate_ingest::mllp::{self, MllpConfig};
use ehrgate_ingest::{Flow, FlowConfig, FlowStats};
use ehrgate_lake::Lake;
use ehrgate_runtime::Runtime;
use ehrgate_wal::{GroupCommit, Log, LogConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::adapters;
use crate::config::Config;

/// What one adapter's listener saw.
#[derive(Default)]
pub struct Lane {
    pub messages: usize,
    pub codes: BTreeMap<String, usize>,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl Lane {
    pub fn pct(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let mut v = self.latencies.clone();
        v.sort();
        v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
    }
}


/// MSA-1 of every ACK in a reply frame (one, or several in a batch ACK).
fn msa_codes(frame: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(frame)
        .split(['\r', '\n'])
        .filter(|s| s.starts_with("MSA"))
        .map(|s| s.get(4..6).unwrap_or("??").to_string())
        .collect()
}

async fn send_frames(addr: std::net::SocketAddr, frames: &[Vec<u8>]) -> anyhow::Result<Lane> {
    let mut lane = Lane::default();
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let started = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    for frame in frames {
        {
            let mut wire = vec![0x0b];
            wire.extend_from_slice(frame);
            wire.extend_from_slice(&[0x1c, 0x0d]);
            let sent = Instant::now();
            stream.write_all(&wire).await?;
            let reply = loop {
                if let Some(end) = buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
                    let reply: Vec<u8> = buf.drain(..end + 2).collect();
                    break reply;
                }
                let n = stream.read(&mut chunk).await?;
                anyhow::ensure!(n > 0, "the listener closed the connection");
                buf.extend_from_slice(&chunk[..n]);
            };
            lane.latencies.push(sent.elapsed());
            for code in msa_codes(&reply) {
                lane.messages += 1;
                *lane.codes.entry(code).or_default() += 1;
            }
        }
    }
    lane.elapsed = started.elapsed();
    Ok(lane)
}

/// Site configuration a vendor adapter's golden files use (its identifier systems
/// and MRN rules): the demo's stand-in for a hospital's settings.
fn site_config(adapter: &str) -> HashMap<String, String> {
    let Some((_, json)) = adapters::SITE_CONFIG.iter().find(|(a, _)| *a == adapter) else { return HashMap::new() };
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(json) else { return HashMap::new() };
    obj.into_iter().map(|(k, v)| (k, v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))).collect()
}

/// Each HL7 file as one frame (a batch file is one frame).
fn hl7_frames(dir: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "hl7"))
        .collect();
    v.sort();
    v.iter().map(|f| std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))).collect()
}

pub struct LiveRun {
    pub lanes: Vec<(String, String, Lane)>,
    pub stats: Arc<FlowStats>,
}

/// Start the flow and one listener per adapter; send the shared HL7 samples to the
/// reference adapter and each vendor's samples (from the repository, when present)
/// to that vendor's adapter; stop cleanly (everything committed).
pub async fn run(cfg: &Config, lake: Arc<Lake>, runtime: &Runtime, connections: &Connections, shared_hl7: &Path) -> anyhow::Result<LiveRun> {
    let mut plan: Vec<(String, Vec<Vec<u8>>)> = vec![("reference".into(), hl7_frames(shared_hl7)?)];
    for vendor in adapters::builtin_names().filter(|n| *n != "reference") {
        let samples = adapters::SAMPLES.iter().filter(|(a, _, _)| *a == vendor).map(|(_, _, b)| b.to_vec()).collect();
        plan.push((vendor.to_string(), samples));
    }
    let mut pipelines: HashMap<String, ehrgate_runtime::Adapter> = HashMap::new();
    let mut labels = HashMap::new();
    for (name, _) in &plan {
        let extra = site_config(name);
        let adapter = adapters::load_named(runtime, connections, cfg, name, extra).await?;
        labels.insert(name.clone(), adapter.label().to_string());
        pipelines.insert(name.clone(), adapter);
    }
    let (log, replay) = Log::open(&cfg.wal.dir, LogConfig::default()).with_context(|| format!("opening the write-ahead log in {}", cfg.wal.dir.display()))?;
    let (flow, tasks) = Flow::start(lake, GroupCommit::start(log, 4096), replay, Arc::new(pipelines), FlowConfig { max_pending: cfg.wal.max_pending.max(1), ..Default::default() })
        .map_err(|e| anyhow::anyhow!("write-ahead log in {}: {e}", cfg.wal.dir.display()))?;
    let stats = flow.stats().clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut listeners = Vec::new();
    let mut sends = Vec::new();
    for (name, frames) in plan {
        let (addr, task) = mllp::bind(MllpConfig::new(&name, "127.0.0.1:0".parse()?, &name), flow.clone(), stop_rx.clone()).await?;
        listeners.push(task);
        let label = labels[&name].clone();
        sends.push((name, label, addr, frames));
    }
    drop(flow);
    let mut lanes = Vec::new();
    // The lanes run at once, like several interfaces feeding one gateway.
    let handles: Vec<_> = sends
        .into_iter()
        .map(|(name, label, addr, frames)| (name, label, tokio::spawn(async move { send_frames(addr, &frames).await })))
        .collect();
    for (name, label, h) in handles {
        lanes.push((name, label, h.await??));
    }
    let _ = stop_tx.send(true);
    for t in listeners {
        let _ = t.await;
    }
    tasks.finish().await;
    Ok(LiveRun { lanes, stats })
}
