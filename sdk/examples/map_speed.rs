//! `cargo run --release -p ehrgate-sdk --example map_speed [FILE...]`: the standard
//! mapping's native time per message (median of 15 rounds) for each file, default
//! the full ADT^A01 and an ORU^R01 of the shared samples. For before/after figures
//! build two checkouts and run both side by side (docs/mapping.md).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The system allocator, counting calls: allocations per message are printed beside
/// the time (each is a malloc and a free, a large share of the cost).
struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

use ehrgate_sdk::Hl7Input;
use ehrgate_sdk::v2fhir::{Standard, map_message};

fn main() {
    let shared = std::env::var("EHRGATE_SHARED").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared").into());
    let mut files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        files = ["adt_a01_ghh_v28_full.hl7", "oru_r01_lab_two_obr_spm_v25_bom.hl7"].iter().map(|f| format!("{shared}/data/hl7/{f}")).collect();
    }
    for f in files {
        let raw = ehrgate_sdk::hl7::decode_bytes(&std::fs::read(&f).expect("read the sample")).into_owned();
        let input = Hl7Input::new(raw);
        let before = ALLOCS.load(Ordering::Relaxed);
        let out = map_message(&Standard, &input).expect("maps");
        let bytes: usize = out.resources.iter().map(String::len).sum();
        let allocs = ALLOCS.load(Ordering::Relaxed) - before;
        let iters = std::env::var("MAP_SPEED_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
        let mut rounds: Vec<f64> = (0..15)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..iters {
                    black_box(map_message(&Standard, black_box(&input)).unwrap());
                }
                t.elapsed().as_secs_f64() * 1e6 / iters as f64
            })
            .collect();
        rounds.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let name = f.rsplit('/').next().unwrap_or(&f);
        println!(
            "{name:45} {:>4} resources {bytes:>7} bytes {allocs:>5} allocations  {:>8.1} µs/message (median)",
            out.resources.len(),
            rounds[7]
        );
    }
}
