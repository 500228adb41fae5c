//! The id index's compact part: entries sorted by key, found through a directory of
//! the keys' top bits (keys are hashes, so evenly spread: a few entries per slot).
//! 24 bytes an entry and 4 per slot (a slot for every two to four entries), built
//! by merging rather than inserting. The entries are kept as they are stored
//! ([`super::persist`]: the key's halves, file and row, little-endian), so a stored
//! index is used where it was read, without a copy; the directory is made again
//! on loading, in the same pass that checks the entries' order.

use bytes::Bytes;

use super::{Key, Loc};
use crate::mapped::{MappedBytes, ReleaseBehind};

/// The bytes of one entry.
pub(crate) const ENTRY: usize = 24;

/// Entries checked at a time on loading (24 KiB: in the first level's cache).
const BLOCK_ENTRIES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: Key,
    pub loc: Loc,
}

impl Entry {
    fn read(b: &[u8]) -> Entry {
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        Entry { key: Key(u64_at(0), u64_at(8)), loc: Loc { file: u32_at(16), row: u32_at(20) } }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key.0.to_le_bytes());
        out.extend_from_slice(&self.key.1.to_le_bytes());
        out.extend_from_slice(&self.loc.file.to_le_bytes());
        out.extend_from_slice(&self.loc.row.to_le_bytes());
    }
}

#[derive(Default)]
pub(crate) struct Sorted {
    /// The entries, [`ENTRY`] bytes each, ascending by key, no key twice.
    raw: Bytes,
    /// The same bytes, when they lie in a file mapping (a stored index loaded from
    /// a local disk): a pass over them lets the pages it has read go behind it, so
    /// that they do not stay in the process's memory (240 MB at 10 million rows).
    mapped: Option<MappedBytes>,
    /// `dir[t]`: the first entry whose key's top `bits` bits are `t` or more.
    dir: Vec<u32>,
    bits: u32,
}

impl Sorted {
    /// `entries` must be ascending by key, with no key twice.
    #[cfg(test)]
    pub(crate) fn from_sorted(entries: Vec<Entry>) -> Sorted {
        let mut raw = Vec::with_capacity(entries.len() * ENTRY);
        for e in &entries {
            e.write(&mut raw);
        }
        Sorted::from_raw(Bytes::from(raw), u32::MAX, |_| {}).expect("sorted entries")
    }

    /// Entries as stored: refused unless ascending by key with no key twice, and
    /// each in a file numbered below `files`. `seen` is given the entries block by
    /// block, each before it is checked: a loader's checksum is computed in the same
    /// pass, the block still in cache (at 10 million rows the entries are 240 MB).
    pub(crate) fn from_raw(raw: Bytes, files: u32, seen: impl FnMut(&[u8])) -> Result<Sorted, String> {
        Sorted::checked(raw, None, files, seen)
    }

    /// As [`Sorted::from_raw`], entries in a file mapping: the pages checked are
    /// let go as the check goes on.
    pub(crate) fn from_mapped(raw: MappedBytes, files: u32, seen: impl FnMut(&[u8])) -> Result<Sorted, String> {
        Sorted::checked(raw.bytes().clone(), Some(raw), files, seen)
    }

    fn checked(raw: Bytes, mapped: Option<MappedBytes>, files: u32, mut seen: impl FnMut(&[u8])) -> Result<Sorted, String> {
        if raw.len() % ENTRY != 0 {
            return Err("entries cut off".into());
        }
        let mut dir = Directory::new(raw.len() / ENTRY);
        let mut last: Option<Key> = None;
        let mut behind = ReleaseBehind::new(mapped.as_ref());
        for (b, block) in raw.chunks(BLOCK_ENTRIES * ENTRY).enumerate() {
            behind.reached(b * BLOCK_ENTRIES * ENTRY);
            seen(block);
            for c in block.chunks_exact(ENTRY) {
                let e = Entry::read(c);
                if last.is_some_and(|k| k >= e.key) {
                    return Err("entries out of order".into());
                }
                if e.loc.file >= files {
                    return Err(format!("an entry in file {}, not listed", e.loc.file));
                }
                last = Some(e.key);
                dir.count(e.key);
            }
        }
        drop(behind);
        Ok(Sorted { mapped, ..dir.over(raw) })
    }

    fn entry(&self, i: usize) -> Entry {
        Entry::read(&self.raw[i * ENTRY..(i + 1) * ENTRY])
    }

    #[cfg(test)]
    pub(crate) fn get(&self, key: Key) -> Option<Loc> {
        self.reader().get(key)
    }

    /// For looking up keys in ascending order: where the entries lie in a file
    /// mapping, the pages behind the keys looked up are let go as it goes, and
    /// the rest once it is dropped.
    pub(crate) fn reader(&self) -> Reader<'_> {
        Reader { sorted: self, behind: ReleaseBehind::new(self.mapped.as_ref()) }
    }

    /// The first entry of `key`'s slot, and where `key`'s entry says its row is.
    fn find(&self, key: Key) -> (usize, Option<Loc>) {
        if self.raw.is_empty() {
            return (0, None);
        }
        let t = top(key, self.bits) as usize;
        let (mut lo, mut hi) = (self.dir[t] as usize, self.dir[t + 1] as usize);
        let slot_start = lo;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let e = self.entry(mid);
            match e.key.cmp(&key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return (slot_start, Some(e.loc)),
            }
        }
        (slot_start, None)
    }

    pub(crate) fn len(&self) -> usize {
        self.raw.len() / ENTRY
    }

    /// Whether the entries lie in a file mapping.
    #[cfg(test)]
    pub(crate) fn is_mapped(&self) -> bool {
        self.mapped.is_some()
    }

    /// The entries as stored.
    pub(crate) fn raw(&self) -> &[u8] {
        &self.raw
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> Vec<Entry> {
        (0..self.len()).map(|i| self.entry(i)).collect()
    }

    /// This and `newer` (ascending, no key twice) as one, each entry's place as
    /// `keep` gives it, leaving out those it refuses (None); where both hold a key,
    /// `newer`'s entry, unless refused.
    pub(crate) fn merge(&self, newer: &[Entry], keep: impl Fn(Loc) -> Option<Loc>) -> Sorted {
        debug_assert!(newer.windows(2).all(|w| w[0].key < w[1].key), "newer entries in order, each key once");
        let most = self.len() + newer.len();
        let mut out = Vec::with_capacity(most * ENTRY);
        // (the directory counted as entries are written: they are in order by
        // construction, so not checked again; sized for the most there can be)
        let mut dir = Directory::new(most);
        let place = |e: Entry| keep(e.loc).map(|loc| Entry { key: e.key, loc });
        let mut behind = ReleaseBehind::new(self.mapped.as_ref());
        let mut a = self
            .raw
            .chunks_exact(ENTRY)
            .enumerate()
            .map(|(i, c)| {
                behind.reached(i * ENTRY);
                Entry::read(c)
            })
            .peekable();
        let mut b = newer.iter().copied().peekable();
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
            if let Some(e) = kept {
                dir.count(e.key);
                e.write(&mut out);
            }
        }
        dir.over(Bytes::from(out))
    }
}

/// A [`Sorted`]'s directory as it is counted: entries per slot, then summed up.
struct Directory {
    /// `counts[t + 1]`: the entries in slot `t`.
    counts: Vec<u32>,
    bits: u32,
}

impl Directory {
    /// For up to `n` entries.
    fn new(n: usize) -> Directory {
        let bits = bits_for(n);
        Directory { counts: vec![0; (1 << bits) + 1], bits }
    }

    fn count(&mut self, key: Key) {
        self.counts[top(key, self.bits) as usize + 1] += 1;
    }

    /// The index of `raw`, the entries counted, in the order counted; with fewer
    /// slots when fewer were counted than the directory was made for (a merge that
    /// left entries out).
    fn over(mut self, raw: Bytes) -> Sorted {
        for t in 1..self.counts.len() {
            self.counts[t] += self.counts[t - 1];
        }
        let bits = bits_for(raw.len() / ENTRY).min(self.bits);
        // (slot t of the smaller directory starts where slot t << shift does)
        let shift = self.bits - bits;
        let dir = match shift {
            0 => self.counts,
            _ => (0..=1usize << bits).map(|t| self.counts[t << shift]).collect(),
        };
        Sorted { raw, mapped: None, dir, bits }
    }
}

/// Looks up keys in ascending order ([`Sorted::reader`]).
pub(crate) struct Reader<'a> {
    sorted: &'a Sorted,
    behind: ReleaseBehind<'a>,
}

impl Reader<'_> {
    /// Where `key`'s entry is; the keys asked after are to be no smaller (or their
    /// entries' pages are mapped again).
    pub(crate) fn get(&mut self, key: Key) -> Option<Loc> {
        let (slot_start, found) = self.sorted.find(key);
        // (a larger key's entry lies in its slot or a later one)
        self.behind.reached(slot_start * ENTRY);
        found
    }
}

/// A directory's bits for `n` entries: a slot for every two to four entries, at
/// most 2^24 slots (64 MiB).
fn bits_for(n: usize) -> u32 {
    (n / 4).max(1).ilog2().min(23) + 1
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
    fn entries_as_stored_are_refused_out_of_order_twice_cut_off_or_in_an_unlisted_file() {
        let raw = |entries: &[Entry]| {
            let mut out = Vec::new();
            for e in entries {
                e.write(&mut out);
            }
            Bytes::from(out)
        };
        let (a, b) = (entry(1, 0), entry(2, 1));
        assert_eq!(Sorted::from_raw(raw(&[a, b]), 2, |_| {}).unwrap().entries(), vec![a, b]);
        assert!(Sorted::from_raw(raw(&[b, a]), 2, |_| {}).err().unwrap().contains("out of order"));
        assert!(Sorted::from_raw(raw(&[a, a]), 2, |_| {}).err().unwrap().contains("out of order"));
        assert!(Sorted::from_raw(raw(&[a, b]), 1, |_| {}).err().unwrap().contains("not listed"));
        assert!(Sorted::from_raw(raw(&[a, b]).slice(..30), 2, |_| {}).err().unwrap().contains("cut off"));
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
        assert_eq!(merged.raw().len(), merged.len() * ENTRY);
        // a file left out: the directory is the one its entries would be loaded with
        let without = base.merge(&newer, |l| (l.file != 1).then_some(l));
        assert_eq!(without.len(), newer.len());
        let loaded = Sorted::from_raw(without.raw.clone(), u32::MAX, |_| {}).unwrap();
        assert_eq!((without.bits, &without.dir), (loaded.bits, &loaded.dir));
        for e in &newer {
            assert_eq!(without.get(e.key), Some(e.loc));
        }
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
