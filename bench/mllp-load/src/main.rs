//! `ehrgate-mllp-load`: drive MLLP servers with the same workload and print a
//! report, side by side.
//!
//! ```text
//! ehrgate-mllp-load --target NAME=HOST:PORT[,per-message-connection] ... \
//!     [--messages N] [--connections C] [--in-flight K] [--rate R --rate-messages M]
//! ```
//!
//! Two runs per target:
//! - throughput: N messages over C connections, each with up to K unacknowledged
//!   messages (pipelining), every ACK checked (MSA-1 AA/CA and MSA-2 = MSH-10);
//! - latency: M messages at a fixed offered rate R msg/s (open loop, spread over C
//!   connections), ACK latency p50 / p99 / max measured from the send.
//!
//! A target marked `per-message-connection` gets a new TCP connection per message
//! (needed for node-hl7-server, whose persistent connections repeat ACKs).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MESSAGE: &str = "MSH|^~\\&|LOADGEN|HOSP|EHRGATE|LAKE|20240102030405||ADT^A01^ADT_A01|{ID}|P|2.5.1\rEVN|A01|20240102030405\rPID|1||{ID}-P^^^HOSP^MR||Doe^Jane^Q||19800101|F|||1 Main St^^Springfield^IL^62701||555-0100\rPV1|1|I|W1^101^A|E|||1234^Attending^Ann|||MED||||7|||1234^Attending^Ann|IN|{ID}-V|||||||||||||||||||||||||20240102030405\r";

struct Target {
    name: String,
    addr: String,
    per_message: bool,
}

struct Args {
    targets: Vec<Target>,
    messages: u64,
    connections: usize,
    in_flight: usize,
    rate: u64,
    rate_messages: u64,
    run: String,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args { targets: vec![], messages: 50_000, connections: 8, in_flight: 32, rate: 2_000, rate_messages: 20_000, run: format!("{:x}", std::process::id()) };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--target" => {
                let v = val()?;
                let (name, rest) = v.split_once('=').ok_or("--target NAME=HOST:PORT")?;
                let (addr, per_message) = match rest.split_once(',') {
                    Some((a, "per-message-connection")) => (a, true),
                    Some((_, o)) => return Err(format!("unknown target option {o}")),
                    None => (rest, false),
                };
                a.targets.push(Target { name: name.into(), addr: addr.into(), per_message });
            }
            "--messages" => a.messages = val()?.parse().map_err(|_| "--messages N")?,
            "--connections" => a.connections = val()?.parse().map_err(|_| "--connections C")?,
            "--in-flight" => a.in_flight = val()?.parse().map_err(|_| "--in-flight K")?,
            "--rate" => a.rate = val()?.parse().map_err(|_| "--rate R")?,
            "--rate-messages" => a.rate_messages = val()?.parse().map_err(|_| "--rate-messages M")?,
            "--run" => a.run = val()?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.targets.is_empty() {
        return Err("give at least one --target NAME=HOST:PORT".into());
    }
    Ok(a)
}

fn frame(id: &str) -> Vec<u8> {
    let mut v = vec![0x0b];
    v.extend_from_slice(MESSAGE.replace("{ID}", id).as_bytes());
    v.extend_from_slice(&[0x1c, 0x0d]);
    v
}

/// Read one MLLP frame; returns (MSA-1, MSA-2).
async fn read_ack(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(String, String)> {
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
            let frame: Vec<u8> = buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&frame);
            let msa = text.split(['\r', '\n']).find(|s| s.contains("MSA")).unwrap_or("");
            let msa = &msa[msa.find("MSA").unwrap_or(0)..];
            let f: Vec<&str> = msa.split('|').collect();
            return Ok((f.get(1).unwrap_or(&"").to_string(), f.get(2).unwrap_or(&"").to_string()));
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "server closed the connection"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn check(ack: &(String, String), id: &str) -> Result<(), String> {
    if (ack.0 == "AA" || ack.0 == "CA") && ack.1 == id { Ok(()) } else { Err(format!("bad ACK for {id}: {ack:?}")) }
}

/// One connection's share of the throughput run: pipelined up to `in_flight`.
async fn throughput_conn(t: &Target, ids: Vec<String>, in_flight: usize) -> Result<(), String> {
    if t.per_message {
        for id in ids {
            let mut s = TcpStream::connect(&t.addr).await.map_err(|e| e.to_string())?;
            s.write_all(&frame(&id)).await.map_err(|e| e.to_string())?;
            let mut buf = Vec::new();
            check(&read_ack(&mut s, &mut buf).await.map_err(|e| e.to_string())?, &id)?;
        }
        return Ok(());
    }
    let s = TcpStream::connect(&t.addr).await.map_err(|e| e.to_string())?;
    s.set_nodelay(true).ok();
    let (mut rd, mut wr) = s.into_split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(in_flight.max(1));
    let writer = tokio::spawn(async move {
        for id in ids {
            wr.write_all(&frame(&id)).await.map_err(|e| e.to_string())?;
            if tx.send(id).await.is_err() {
                break;
            }
        }
        Ok::<_, String>(wr)
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while let Some(id) = rx.recv().await {
        loop {
            if let Some(end) = buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
                let frame: Vec<u8> = buf.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&frame);
                let msa = text.split(['\r', '\n']).find(|s| s.starts_with("MSA")).unwrap_or("");
                let f: Vec<&str> = msa.split('|').collect();
                check(&(f.get(1).unwrap_or(&"").to_string(), f.get(2).unwrap_or(&"").to_string()), &id)?;
                break;
            }
            let n = rd.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("server closed the connection".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    writer.await.map_err(|e| e.to_string())??;
    Ok(())
}

async fn throughput(t: &Target, a: &Args, tag: &str) -> Result<f64, String> {
    let per = a.messages / a.connections as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..a.connections {
        let ids: Vec<String> = (0..per).map(|i| format!("{tag}{c}x{i}")).collect();
        let t = Target { name: t.name.clone(), addr: t.addr.clone(), per_message: t.per_message };
        let k = a.in_flight;
        tasks.push(tokio::spawn(async move { throughput_conn(&t, ids, k).await }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok((per * a.connections as u64) as f64 / started.elapsed().as_secs_f64())
}

/// Open loop at `rate`: each connection sends on its own schedule and records
/// send-to-ACK latency.
async fn latency(t: &Target, a: &Args, tag: &str) -> Result<(Vec<Duration>, u64), String> {
    let conns = a.connections.max(1);
    let per = a.rate_messages / conns as u64;
    let interval = Duration::from_secs_f64(conns as f64 / a.rate as f64);
    let late = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let addr = t.addr.clone();
        let per_message = t.per_message;
        let tag = format!("{tag}{c}y");
        let late = late.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per as usize);
            let start = Instant::now() + interval.mul_f64(c as f64 / conns as f64);
            if per_message {
                for i in 0..per {
                    let due = start + interval * i as u32;
                    tokio::time::sleep_until(due.into()).await;
                    let id = format!("{tag}{i}");
                    let mut s = TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
                    s.write_all(&frame(&id)).await.map_err(|e| e.to_string())?;
                    let mut buf = Vec::new();
                    check(&read_ack(&mut s, &mut buf).await.map_err(|e| e.to_string())?, &id)?;
                    lat.push(due.elapsed());
                }
                return Ok::<_, String>(lat);
            }
            let s = TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
            s.set_nodelay(true).ok();
            let (mut rd, mut wr) = s.into_split();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
            let writer = tokio::spawn(async move {
                for i in 0..per {
                    let due = start + interval * i as u32;
                    if Instant::now() > due + interval {
                        late.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep_until(due.into()).await;
                    let id = format!("{tag}{i}");
                    wr.write_all(&frame(&id)).await.map_err(|e| e.to_string())?;
                    let _ = tx.send((id, due));
                }
                Ok::<_, String>(wr)
            });
            let mut pending: VecDeque<(String, Instant)> = VecDeque::new();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 16 * 1024];
            let mut got = 0;
            while got < per {
                while let Ok(p) = rx.try_recv() {
                    pending.push_back(p);
                }
                if let Some(end) = buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
                    let frame: Vec<u8> = buf.drain(..end + 2).collect();
                    let now = Instant::now();
                    while pending.is_empty() {
                        pending.push_back(rx.recv().await.ok_or("writer stopped")?);
                    }
                    let (id, due) = pending.pop_front().unwrap();
                    let text = String::from_utf8_lossy(&frame);
                    let msa = text.split(['\r', '\n']).find(|s| s.starts_with("MSA")).unwrap_or("");
                    let f: Vec<&str> = msa.split('|').collect();
                    check(&(f.get(1).unwrap_or(&"").to_string(), f.get(2).unwrap_or(&"").to_string()), &id)?;
                    lat.push(now.duration_since(due));
                    got += 1;
                    continue;
                }
                let n = rd.read(&mut chunk).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("server closed the connection".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            writer.await.map_err(|e| e.to_string())??;
            Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())??);
    }
    all.sort();
    Ok((all, late.load(Ordering::Relaxed)))
}

fn pct(v: &[Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "MLLP load: {} messages over {} connections ({} in flight each) for throughput; {} messages at {} msg/s offered for latency",
        a.messages, a.connections, a.in_flight, a.rate_messages, a.rate
    );
    println!("{:<28} {:>12} {:>10} {:>10} {:>10} {:>8}", "target", "msg/s", "p50 ms", "p99 ms", "max ms", "late");
    let mut failed = false;
    for (i, t) in a.targets.iter().enumerate() {
        let tag = format!("{}t{i}", a.run);
        // --messages 0: the latency run only.
        let tp = if a.messages == 0 { Ok(f64::NAN) } else { throughput(t, &a, &tag).await };
        let lt = latency(t, &a, &tag).await;
        match (tp, lt) {
            (Ok(tp), Ok((lat, late))) => println!(
                "{:<28} {:>12.0} {:>10.2} {:>10.2} {:>10.2} {:>8}",
                t.name,
                tp,
                pct(&lat, 0.5),
                pct(&lat, 0.99),
                pct(&lat, 1.0),
                late
            ),
            (tp, lt) => {
                failed = true;
                println!("{:<28} failed: {:?} / {:?}", t.name, tp.err(), lt.err());
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
