//! Group commit: one thread owns the log; concurrent appends are written and
//! fsynced together.

use std::thread;

use tokio::sync::{mpsc, oneshot};

use crate::log::{Log, WalError};

#[derive(Debug, Clone, thiserror::Error)]
pub enum GroupCommitError {
    #[error("{0}")]
    Wal(String),
    #[error("the write-ahead log has stopped")]
    Stopped,
}

enum Op {
    /// Records and where to send the sequence number of the first one.
    Append(Vec<Vec<u8>>, oneshot::Sender<Result<u64, GroupCommitError>>),
    Checkpoint(u64, oneshot::Sender<Result<(), GroupCommitError>>),
}

/// Appends at most this many bytes per write + fsync.
const GROUP_BYTES: usize = 8 << 20;

/// A handle to the log's thread. Cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::Sender<Op>,
}

impl GroupCommit {
    /// Move `log` onto its own thread. `queue` bounds the appends waiting for it.
    pub fn start(log: Log, queue: usize) -> GroupCommit {
        let (tx, rx) = mpsc::channel(queue.max(1));
        thread::Builder::new().name("ehrgate-wal".into()).spawn(move || run(log, rx)).expect("spawn the write-ahead log thread");
        GroupCommit { tx }
    }

    /// Append one record; resolves with its sequence number once it is durable.
    pub async fn append(&self, payload: Vec<u8>) -> Result<u64, GroupCommitError> {
        self.append_all(vec![payload]).await
    }

    /// Append records (consecutively); resolves with the sequence number of the
    /// first once all are durable.
    pub async fn append_all(&self, payloads: Vec<Vec<u8>>) -> Result<u64, GroupCommitError> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Op::Append(payloads, done)).await.map_err(|_| GroupCommitError::Stopped)?;
        wait.await.map_err(|_| GroupCommitError::Stopped)?
    }

    /// Everything up to `seq` has reached its final store.
    pub async fn checkpoint(&self, seq: u64) -> Result<(), GroupCommitError> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Op::Checkpoint(seq, done)).await.map_err(|_| GroupCommitError::Stopped)?;
        wait.await.map_err(|_| GroupCommitError::Stopped)?
    }
}

fn run(mut log: Log, mut rx: mpsc::Receiver<Op>) {
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    // Each waiter with the index of its first record in `payloads`.
    let mut waiters: Vec<(usize, oneshot::Sender<Result<u64, GroupCommitError>>)> = Vec::new();
    while let Some(op) = rx.blocking_recv() {
        let mut next = Some(op);
        let mut bytes = 0;
        // Take everything already waiting, up to a group's worth of bytes; a
        // checkpoint ends the group (it is applied after the appends before it).
        let mut checkpoint = None;
        while let Some(op) = next.take() {
            match op {
                Op::Append(p, done) => {
                    bytes += p.iter().map(Vec::len).sum::<usize>();
                    waiters.push((payloads.len(), done));
                    payloads.extend(p);
                }
                Op::Checkpoint(seq, done) => {
                    checkpoint = Some((seq, done));
                    break;
                }
            }
            if bytes >= GROUP_BYTES {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !waiters.is_empty() {
            let result = log.append(&payloads).map_err(|e: WalError| GroupCommitError::Wal(e.to_string()));
            if let Err(e) = &result {
                tracing::error!("write-ahead log append failed: {e}");
            }
            for (i, done) in waiters.drain(..) {
                let _ = done.send(result.clone().map(|first| first + i as u64));
            }
            payloads.clear();
        }
        if let Some((seq, done)) = checkpoint {
            let r = log.checkpoint(seq).map_err(|e| GroupCommitError::Wal(e.to_string()));
            if let Err(e) = &r {
                tracing::error!("write-ahead log checkpoint failed: {e}");
            }
            let _ = done.send(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogConfig;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_get_distinct_durable_sequence_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
        let wal = GroupCommit::start(log, 1024);
        let mut tasks = Vec::new();
        for t in 0..8u8 {
            let wal = wal.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..200u32 {
                    seqs.push((wal.append(format!("{t}:{i}").into_bytes()).await.unwrap(), format!("{t}:{i}")));
                }
                seqs
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        wal.checkpoint(100).await.unwrap();
        drop(wal);
        let mut seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
        seqs.sort();
        assert_eq!(seqs, (1..=1600).collect::<Vec<_>>());
        // What each append was told is what is on disk, and the checkpoint holds.
        let (_, replay) = Log::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(replay.len(), 1500);
        for r in replay {
            let expect = &all.iter().find(|(s, _)| *s == r.seq).unwrap().1;
            assert_eq!(&String::from_utf8(r.payload).unwrap(), expect);
        }
    }
}
