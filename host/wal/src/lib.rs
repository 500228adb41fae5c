//! # ehrgate-wal
//!
//! The gateway acknowledges an inbound message only once it is durable on local
//! disk. This crate is that durability: an append-only log of opaque records in
//! segment files, each record framed as
//!
//! ```text
//! [len: u32 LE][crc32: u32 LE over seq + payload][seq: u64 LE][payload: len bytes]
//! ```
//!
//! - [`Log`] is the synchronous log: `append` writes records and `fdatasync`s the
//!   segment before returning their sequence numbers; `checkpoint(seq)` records
//!   (atomically: write, fsync, rename, fsync the directory) that everything up to
//!   `seq` has reached its final store, and deletes segments wholly below it;
//!   `open` returns the records after the checkpoint for replay. A torn tail (a
//!   crash in the middle of a write) is detected by length and checksum and cut off:
//!   such a record was never acknowledged, because acknowledgement follows the fsync.
//! - [`GroupCommit`] runs a log on its own thread and batches concurrent appends
//!   into one write and one fsync, which is what makes durable acknowledgement
//!   cheap under load.
//!
//! Why a hand-written segment log rather than an embedded database: the access
//! pattern is exactly append, fsync, replay-after-checkpoint, drop-old-segments. A
//! log does that with one sequential write and one fsync per group, has no
//! compaction or write amplification, and its whole crash story fits on this page
//! (and in the tests, which tear records and corrupt tails on purpose).

mod group;
mod log;

pub use group::{GroupCommit, GroupCommitError};
pub use log::{Log, LogConfig, Record, WalError};
