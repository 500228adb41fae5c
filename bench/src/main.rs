//! `cargo run --release -p ehrgate-bench`: measures, side by side in one run,
//!
//! 1. the sandbox's per-call cost: a fresh instance (pooling allocator, InstancePre),
//!    and the extra cost of the first call into it, against warm calls in one instance;
//! 2. the reference adapter's map-hl7 on an ADT message through the component, against
//!    the same mapping called natively (ratio);
//! 3. HL7v2 parser throughput (MB/s) over the shared samples: ehrgate-sdk's parser
//!    against the hl7-parser and rust-hl7 crates;
//! 4. adapter versions: the compile time of each shipped adapter, the memory a
//!    second live version of one adapter holds, and the registry's swap itself.
//!    (The swap under MLLP load, with ACK latency, is scripts/bench-swap.)
//!
//! Each figure is the median of several rounds; the machines are noisy.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ehrgate_runtime::{AdapterSettings, Hl7Message, Registry, Runtime, RuntimeConfig};
use ehrgate_sdk::{Adapter as _, Hl7Input};

const ROUNDS: usize = 15;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Median over rounds of the per-iteration time of `f` run `iters` times.
fn per_iter(iters: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..iters.min(50) {
        f();
    }
    let samples = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_secs_f64() / iters as f64
        })
        .collect();
    Duration::from_secs_f64(median(samples))
}

async fn per_iter_async<F, Fut>(iters: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..iters.min(50) {
        f().await;
    }
    let mut samples = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..iters {
            f().await;
        }
        samples.push(t.elapsed().as_secs_f64() / iters as f64);
    }
    Duration::from_secs_f64(median(samples))
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Every sample message that all three parsers accept, CR-terminated, without BOM.
fn corpus() -> Vec<String> {
    let mut msgs = Vec::new();
    for path in ehrgate_testkit::hl7_samples() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("malformed") || name.starts_with("batch") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let text = ehrgate_sdk::hl7::decode_bytes(&bytes).into_owned();
        let cr: String = text.replace("\r\n", "\r").replace('\n', "\r");
        let cr = cr.trim_end_matches('\r').to_string();
        let ok_ours = ehrgate_sdk::hl7::Message::parse(&cr).is_ok();
        let ok_a = hl7_parser::parse_message(&cr).is_ok();
        let ok_b = rusthl7::message::Message::try_from(cr.as_str()).is_ok();
        if ok_ours && ok_a && ok_b {
            msgs.push(cr);
        }
    }
    msgs
}

fn adt_message() -> String {
    let path = ehrgate_testkit::shared_dir().join("data/hl7/adt_a01_ghh_v28_full.hl7");
    ehrgate_sdk::hl7::decode_bytes(&std::fs::read(path).unwrap()).into_owned()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("ehrgate bench (median of {ROUNDS} rounds each; release build)\n");

    // --- sandbox and mapping -------------------------------------------------
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let wasm = std::fs::read(ehrgate_testkit::guest("ehrgate-adapter-reference")).unwrap();
    let size_kb = wasm.len() as f64 / 1024.0;
    let t = Instant::now();
    let adapter = runtime.load("reference", &wasm, AdapterSettings::default()).await.expect("load reference");
    let load_ms = t.elapsed().as_secs_f64() * 1e3;

    let adt = adt_message();
    let msg = Hl7Message { raw: adt.clone(), source: "bench".into(), received_at_ms: 0 };
    let input = Hl7Input { raw: adt.clone(), source: "bench".into(), received_at_ms: 0 };
    assert_eq!(
        adapter.map_hl7(&msg).await.unwrap().resources.len(),
        ehrgate_adapter_reference::Reference::map_hl7(&input).unwrap().resources.len(),
        "component and native mapping must agree"
    );

    let instantiate = per_iter_async(2000, || async { adapter.instantiate_only().await.unwrap() }).await;
    let describe_fresh = per_iter_async(2000, || async {
        black_box(adapter.describe().await.unwrap());
    })
    .await;

    const BATCH: usize = 64;
    let batch: Vec<Hl7Message> = (0..BATCH).map(|_| msg.clone()).collect();
    let map_fresh = per_iter_async(300, || async {
        black_box(adapter.map_hl7(&msg).await.unwrap());
    })
    .await;
    let map_batch_total = per_iter_async(10, || async {
        black_box(adapter.map_hl7_batch(&batch).await.unwrap());
    })
    .await;
    let map_in_batch = map_batch_total / BATCH as u32;
    let map_native = per_iter(2000, || {
        black_box(ehrgate_adapter_reference::Reference::map_hl7(black_box(&input)).unwrap());
    });
    // Warm per-message cost inside one instance: the batch's cost with its single
    // instantiation taken out.
    let warm = map_batch_total.saturating_sub(instantiate) / BATCH as u32;
    let first_call_extra = map_fresh.saturating_sub(instantiate).saturating_sub(warm);
    let overhead_per_call = instantiate + first_call_extra;
    let overhead_batched = overhead_per_call / BATCH as u32;

    println!("sandbox (reference adapter component, {size_kb:.0} KiB; load+compile {load_ms:.0} ms)");
    println!("  fresh instance per call (instantiate only)      {:>9.1} us", us(instantiate));
    println!("  fresh instance + describe()                      {:>9.1} us", us(describe_fresh));
    println!("  extra cost of the first call into a fresh instance {:>7.1} us", us(first_call_extra));
    println!("  sandbox overhead per message, one call each      {:>9.1} us   (goal <= 10 us)", us(overhead_per_call));
    println!("  sandbox overhead per message, batches of {BATCH}      {:>9.2} us   (goal <= 10 us)", us(overhead_batched));
    println!();
    println!("map-hl7, ADT^A01 ({} bytes, {} resources)", adt.len(), ehrgate_adapter_reference::Reference::map_hl7(&input).unwrap().resources.len());
    println!("  native (same Rust mapping, no sandbox)           {:>9.1} us", us(map_native));
    println!("  component, warm (per message in a batch of {BATCH})  {:>9.1} us   ratio {:.2}x (goal <= 1.3x)", us(map_in_batch), map_in_batch.as_secs_f64() / map_native.as_secs_f64());
    println!("  component, fresh instance per message            {:>9.1} us   ratio {:.2}x", us(map_fresh), map_fresh.as_secs_f64() / map_native.as_secs_f64());
    println!();

    // --- parsers -------------------------------------------------------------
    let msgs = corpus();
    let bytes: usize = msgs.iter().map(String::len).sum();
    let mb = bytes as f64 / 1e6;
    let ours = per_iter(200, || {
        for m in &msgs {
            black_box(ehrgate_sdk::hl7::Message::parse(black_box(m)).unwrap());
        }
    });
    let ours_access = per_iter(200, || {
        for m in &msgs {
            let p = ehrgate_sdk::hl7::Message::parse(black_box(m)).unwrap();
            black_box(p.get("PID-3.1"));
            black_box(p.get("PID-5.1"));
        }
    });
    let hl7p = per_iter(200, || {
        for m in &msgs {
            black_box(hl7_parser::parse_message(black_box(m)).unwrap());
        }
    });
    let rhl7 = per_iter(200, || {
        for m in &msgs {
            black_box(rusthl7::message::Message::try_from(black_box(m.as_str())).unwrap());
        }
    });
    println!("HL7v2 parser throughput, {} messages, {:.1} KB (every sample all three accept)", msgs.len(), bytes as f64 / 1e3);
    println!("  ehrgate-sdk hl7::Message::parse                  {:>9.0} MB/s   (goal >= 200 MB/s)", mb / ours.as_secs_f64());
    println!("  ehrgate-sdk parse + PID-3.1 and PID-5.1 lookups  {:>9.0} MB/s", mb / ours_access.as_secs_f64());
    println!("  hl7-parser 0.3 parse_message                     {:>9.0} MB/s", mb / hl7p.as_secs_f64());
    println!("  rust-hl7 0.5 Message::try_from                   {:>9.0} MB/s", mb / rhl7.as_secs_f64());
    println!();

    // --- adapter versions ------------------------------------------------------
    println!("adapter versions (compile = Component::new + link + describe(), median of 3)");
    for name in ["reference", "epic", "oracle-health", "meditech", "mirth", "rhapsody", "cloverleaf"] {
        let bytes = std::fs::read(ehrgate_testkit::guest(&format!("ehrgate-adapter-{name}"))).unwrap();
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            black_box(runtime.load(name, &bytes, AdapterSettings::default()).await.expect("load"));
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!("  compile {name:<14} {:>6.0} KiB  {:>9.0} ms", bytes.len() as f64 / 1024.0, median(times));
    }
    let next = std::fs::read(ehrgate_testkit::guest("ehrgate-guest-reference-next")).unwrap();
    let rss_before = rss_mb();
    let v2 = runtime.load("reference-next", &next, AdapterSettings::default()).await.expect("load 0.9.0");
    let rss_after = rss_mb();
    println!("  a second live version of reference (0.9.0 beside 0.1.0) holds {:.1} MiB RSS", rss_after - rss_before);
    let registry = Registry::new();
    registry.activate("reference", adapter.clone());
    let mut swaps = Vec::new();
    for i in 0..2000 {
        let a = if i % 2 == 0 { v2.clone() } else { adapter.clone() };
        let t = Instant::now();
        black_box(registry.activate("reference", a));
        swaps.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let lookups = per_iter(100_000, || {
        black_box(registry.route("reference"));
    });
    println!("  registry swap (pointer replacement under the write lock)    {:>7.2} us", median(swaps));
    println!("  registry lookup per map group (read lock, two Arc clones)   {:>7.3} us", us(lookups));
}

/// Resident set size of this process, MiB.
fn rss_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}
