//! The id index's compact part: entries sorted by key, found through a directory of
//! the keys' top bits (keys are hashes, so evenly spread: a few entries per slot).
//! 24 bytes an entry and 4 per slot (a slot for every two to four entries), built
//! by merging rather than inserting; the entries are what is stored
//! ([`super::persist`]), the directory is made again on loading.

use super::{Key, Loc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: Key,
    pub loc: Loc,
}

#[derive(Default)]
pub(crate) struct Sorted {
    /// Ascending by key, no key twice.
    entries: Vec<Entry>,
    /// `dir[t]`: the first entry whose key's top `bits` bits are `t` or more.
    dir: Vec<u32>,
    bits: u32,
}

impl Sorted {
    /// `entries` must be ascending by key, with no key twice.
    pub(crate) fn from_sorted(entries: Vec<Entry>) -> Sorted {
        debug_assert!(entries.windows(2).all(|w| w[0].key < w[1].key));
        // (a slot for every two to four entries, at most 2^24 slots: 64 MiB)
        let bits = (entries.len() / 4).max(1).ilog2().min(23) + 1;
        let slots = 1usize << bits;
        // (entries per slot, then summed up: the first entry of each slot)
        let mut dir = vec![0u32; slots + 1];
        for e in &entries {
            dir[top(e.key, bits) as usize + 1] += 1;
        }
        for t in 1..=slots {
            dir[t] += dir[t - 1];
        }
        Sorted { entries, dir, bits }
    }

    pub(crate) fn get(&self, key: Key) -> Option<Loc> {
        if self.entries.is_empty() {
            return None;
        }
        let t = top(key, self.bits) as usize;
        let slot = &self.entries[self.dir[t] as usize..self.dir[t + 1] as usize];
        slot.binary_search_by(|e| e.key.cmp(&key))
            .ok()
            .map(|i| slot[i].loc)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// This and `newer` (ascending, no key twice) as one, each entry's place as
    /// `keep` gives it, leaving out those it refuses (None); where both hold a key,
    /// `newer`'s entry, unless refused.
    pub(crate) fn merge(&self, newer: &[Entry], keep: impl Fn(Loc) -> Option<Loc>) -> Sorted {
        let mut out = Vec::with_capacity(self.entries.len() + newer.len());
        let place = |e: &Entry| keep(e.loc).map(|loc| Entry { key: e.key, loc });
        let (mut a, mut b) = (self.entries.iter().peekable(), newer.iter().peekable());
        loop {
            let kept = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.key < y.key => a.next().and_then(place),
                (Some(x), Some(y)) if x.key == y.key => {
                    let older = a.next();
                    b.next().and_then(place).or_else(|| older.and_then(place))
                }
                (Some(_), Some(_)) | (None, Some(_)) => b.next().and_then(place),
                (Some(_), None) => a.next().and_then(place),
                (None, None) => break,
            };
            out.extend(kept);
        }
        Sorted::from_sorted(out)
    }
}

/// A key's top `bits` bits (1 to 24).
fn top(key: Key, bits: u32) -> u64 {
    key.0 >> (64 - bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(k0: u64, file: u32) -> Entry {
        Entry {
            key: Key(k0, !k0),
            loc: Loc {
                file,
                row: k0 as u32,
            },
        }
    }

    fn spread(n: u64, file: u32) -> Vec<Entry> {
        // (keys spread over the whole range, as hashes are)
        let mut v: Vec<Entry> = (0..n)
            .map(|i| entry(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), file))
            .collect();
        v.sort_by_key(|e| e.key);
        v
    }

    #[test]
    fn finds_every_entry_and_nothing_else() {
        for n in [0u64, 1, 2, 3, 5, 100, 10_000] {
            let entries = spread(n, 1);
            let s = Sorted::from_sorted(entries.clone());
            assert_eq!(s.len(), n as usize);
            for e in &entries {
                assert_eq!(s.get(e.key), Some(e.loc), "n {n}");
                assert_eq!(s.get(Key(e.key.0, e.key.1 ^ 1)), None);
            }
            assert_eq!(s.get(Key(u64::MAX, 0)), None);
            assert_eq!(s.get(Key(0, 0)), None);
        }
        // the extremes of the range, and keys sharing a slot
        let s = Sorted::from_sorted(vec![
            entry(0, 1),
            entry(1, 1),
            entry(2, 1),
            entry(u64::MAX, 2),
        ]);
        for k0 in [0, 1, 2, u64::MAX] {
            assert!(s.get(Key(k0, !k0)).is_some(), "{k0}");
        }
    }

    #[test]
    fn merge_lets_newer_win_and_leaves_out_what_keep_refuses() {
        let old = spread(1000, 1);
        let base = Sorted::from_sorted(old.clone());
        // newer: every tenth key again (now in file 2), and new keys (file 3)
        let mut newer: Vec<Entry> = old
            .iter()
            .step_by(10)
            .map(|e| Entry {
                key: e.key,
                loc: Loc {
                    file: 2,
                    row: e.loc.row,
                },
            })
            .collect();
        newer.extend((0..100u64).map(|i| entry(i.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1, 3)));
        newer.sort_by_key(|e| e.key);
        newer.dedup_by_key(|e| e.key);
        // (file 4 is gone: nothing points there)
        let merged = base.merge(&newer, |l| (l.file != 4).then_some(l));
        for (i, e) in old.iter().enumerate() {
            let want = if i % 10 == 0 { 2 } else { 1 };
            assert_eq!(merged.get(e.key).map(|l| l.file), Some(want));
        }
        for e in newer.iter().filter(|e| e.loc.file == 3) {
            assert_eq!(merged.get(e.key), Some(e.loc));
        }
        assert!(merged.entries().windows(2).all(|w| w[0].key < w[1].key));
        // a file left out
        let without = base.merge(&newer, |l| (l.file != 1).then_some(l));
        assert_eq!(without.len(), newer.len());
        // where the newer entry is refused, the older one stands
        let older = base.merge(&newer, |l| (l.file != 2).then_some(l));
        for e in &old {
            assert_eq!(older.get(e.key), Some(e.loc));
        }
        // entries are placed where `keep` says (files numbered again)
        let moved = base.merge(&[], |l| Some(Loc { file: l.file + 10, ..l }));
        for e in &old {
            assert_eq!(moved.get(e.key), Some(Loc { file: 11, ..e.loc }));
        }
    }
}
