//! Reads (and a write beside them) run on their own tasks, so that decoding and
//! encoding spread over every core.

use std::future::Future;

use deltalake::DeltaTableError;
use tokio::task::JoinHandle;

/// Runs `read` (or any work) on a task of its own; the returned future gives its
/// result (a panic in it comes back as an error, the writer goes on). Dropping that future (a
/// stream of reads given up on after an error) stops the task at its next await.
pub(crate) fn on_own_task<T: Send + 'static>(
    what: &'static str,
    read: impl Future<Output = Result<T, DeltaTableError>> + Send + 'static,
) -> impl Future<Output = Result<T, DeltaTableError>> {
    let task = Aborting(tokio::spawn(read));
    async move {
        let mut task = task;
        (&mut task.0).await.map_err(|e| DeltaTableError::Generic(format!("{what}: {e}")))?
    }
}

struct Aborting<T>(JoinHandle<T>);

impl<T> Drop for Aborting<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `work` (blocking: decoding a mapped file, whose pages may still have to
/// come from disk) on tokio's blocking threads, not on a worker that serves others.
pub(crate) async fn on_blocking_thread<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, DeltaTableError> + Send + 'static,
) -> Result<T, DeltaTableError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| DeltaTableError::Generic(format!("{what}: {e}")))?
}
