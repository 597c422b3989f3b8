//! The committer: one thread per replica with storage, so an fsync never blocks the async
//! runtime, and writes that arrive during one commit share the next (group commit).

use super::ReplicaError;
use super::shared::Shared;
use super::view::MapView;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Starts the committer of `shared`, woken through `woken`.
pub(super) fn spawn<C: MapView>(
    shared: Arc<Shared<C>>,
    woken: std::sync::mpsc::Receiver<()>,
) -> Result<std::thread::JoinHandle<()>, ReplicaError> {
    std::thread::Builder::new()
        .name(format!("herd-commit-{}", shared.name))
        .spawn(move || {
            /// Marks the committer gone however the thread ends (return or unwind), so no
            /// writer waits forever for a commit that will not come.
            struct Closed<C: MapView>(Arc<Shared<C>>);
            impl<C: MapView> Drop for Closed<C> {
                fn drop(&mut self) {
                    self.0.committed.send_modify(|c| c.closed = true);
                }
            }
            let _closed = Closed(shared.clone());
            loop {
                let closed = woken.recv().is_err();
                let stopping = closed || shared.stopping.load(Ordering::SeqCst);
                if shared.committed.borrow().failed.is_none() {
                    let result = shared.commit_once().and_then(|_| {
                        if let (true, Some(s)) = (stopping, &shared.storage) {
                            s.flush()?;
                        }
                        Ok(())
                    });
                    if let Err(e) = result {
                        tracing::error!(replica = %shared.name, error = %e, "storage commit failed");
                        let e = Arc::new(e);
                        shared.committed.send_modify(|c| c.failed = Some(e));
                    }
                }
                if stopping {
                    return;
                }
            }
        })
        .map_err(ReplicaError::Thread)
}
