//! Counters of a running export: files, resources, bytes, rate. Read by the
//! terminal reporter, written to the state file as figures, and logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::state::Figures;

pub struct Progress {
    started: Instant,
    pub files_total: AtomicU64,
    pub files_done: AtomicU64,
    pub resources: AtomicU64,
    pub quarantined: AtomicU64,
    pub bytes: AtomicU64,
    pub tombstones: AtomicU64,
    /// A file ended short even after re-downloads (its shortfall is quarantined).
    pub shortfall: std::sync::atomic::AtomicBool,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            started: Instant::now(),
            files_total: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            resources: AtomicU64::new(0),
            quarantined: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            tombstones: AtomicU64::new(0),
            shortfall: Default::default(),
        }
    }
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Progress {
    pub fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }

    pub fn figures(&self) -> Figures {
        let seconds = self.started.elapsed().as_secs_f64();
        let resources = get(&self.resources);
        Figures {
            files_done: get(&self.files_done),
            files_total: get(&self.files_total),
            resources,
            quarantined: get(&self.quarantined),
            bytes: get(&self.bytes),
            seconds,
            resources_per_s: if seconds > 0.0 { resources as f64 / seconds } else { 0.0 },
            tombstones: get(&self.tombstones),
            updated_at: chrono_now(),
        }
    }

    /// `files 3/12, 45,000 resources (2 quarantined), 21.4 MB, 15,000 resources/s`
    pub fn line(&self) -> String {
        let f = self.figures();
        format!(
            "files {}/{}, {} resources ({} quarantined, {} deleted), {:.1} MB, {} resources/s",
            f.files_done,
            f.files_total,
            thousands(f.resources),
            f.quarantined,
            get(&self.tombstones),
            f.bytes as f64 / 1e6,
            thousands(f.resources_per_s as u64)
        )
    }
}

fn chrono_now() -> String {
    ehrgate_lake::rfc3339(ehrgate_lake::now_micros())
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_groups_digits() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(1234567), "1,234,567");
        assert_eq!(super::thousands(100), "100");
    }
}
