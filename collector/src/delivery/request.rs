//! Snapshot requests from the aggregator: an ack names the maintenance window covering this
//! host (`Ack.preflight_window`); the first ack naming a window the delivery has not acted on
//! wakes the preflight thread through a [`SnapshotRequests`] handle.
//!
//! The delivery loop owns the memory of the last window (across reconnects, not restarts: the
//! agent takes a snapshot at start anyway). Requests coalesce: one pending wake-up at most.

use crossbeam_channel::{Receiver, Sender, TrySendError};

/// The sending side: asks for a snapshot now. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SnapshotRequests {
    tx: Sender<()>,
}

/// A request channel: the handle delivery uses, and the receiver the preflight thread waits
/// on.
pub fn snapshot_requests() -> (SnapshotRequests, Receiver<()>) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    (SnapshotRequests { tx }, rx)
}

impl SnapshotRequests {
    /// Asks for a snapshot; a request already pending stands for this one too. Returns false
    /// when the preflight thread is gone.
    pub fn request(&self) -> bool {
        !matches!(self.tx.try_send(()), Err(TrySendError::Disconnected(())))
    }
}

/// What the delivery loop remembers of the acks' windows.
#[derive(Debug, Default)]
pub(super) struct WindowWatch {
    last: String,
}

impl WindowWatch {
    /// Called with each ack's `preflight_window`; asks `requests` for a snapshot when a
    /// window appears that differs from the last one seen.
    pub(super) fn ack(&mut self, window: &str, requests: Option<&SnapshotRequests>) {
        if window == self.last {
            return;
        }
        self.last = window.to_owned();
        if window.is_empty() {
            return;
        }
        if let Some(r) = requests {
            tracing::info!(
                message =
                    "A maintenance window covering this host started; taking a preflight snapshot.",
                window
            );
            r.request();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_per_new_window_and_requests_coalesce() {
        let (tx, rx) = snapshot_requests();
        let mut w = WindowWatch::default();
        w.ack("", Some(&tx));
        assert!(rx.try_recv().is_err(), "no window, no request");
        w.ack("patch@100", Some(&tx));
        w.ack("patch@100", Some(&tx));
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err(), "the same window asks once");
        // Between windows, then the same id again at a new start, then a second window
        // before the first request was taken: one wake-up stands for both.
        w.ack("", Some(&tx));
        w.ack("patch@200", Some(&tx));
        w.ack("other@250", Some(&tx));
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err());
        drop(rx);
        assert!(!tx.request(), "the preflight thread is gone");
    }
}
