//! Per-finding settlement for [`Router::send`](super::Router::send).
//!
//! A finding routed to several receivers is settled only when every receiver confirmed it.
//! Each place that still owes a confirmation holds a [`Pending`]; a `Pending` dropped without
//! [`Pending::confirm`] marks the finding failed (a receiver gave up, a queue was full, the
//! router stopped with the group unsent). When the last `Pending` of a finding is gone, the
//! finding settles on its submission's ticket: delivered, or failed if any holder failed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use patchwatch_sinks::{Settled, Ticket};

/// Shared state of one finding's settlement.
#[derive(Debug)]
struct Shared {
    failed: AtomicBool,
    ticket: Arc<Ticket>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.ticket.settle(if self.failed.load(Ordering::Acquire) {
            Settled::Failed
        } else {
            Settled::Delivered
        });
    }
}

/// One outstanding confirmation of one finding. Dropping it unconfirmed fails the finding.
#[derive(Debug)]
pub(crate) struct Pending {
    shared: Arc<Shared>,
    confirmed: bool,
}

impl Pending {
    /// The first (and so far only) obligation of a finding on `ticket`.
    pub(crate) fn new(ticket: Arc<Ticket>) -> Self {
        Pending {
            shared: Arc::new(Shared {
                failed: AtomicBool::new(false),
                ticket,
            }),
            confirmed: false,
        }
    }

    /// Another obligation for the same finding (one more receiver must confirm it).
    pub(crate) fn share(&self) -> Self {
        Pending {
            shared: Arc::clone(&self.shared),
            confirmed: false,
        }
    }

    /// This obligation is met (delivered, or suppressed by a rule).
    pub(crate) fn confirm(mut self) {
        self.confirmed = true;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.confirmed {
            self.shared.failed.store(true, Ordering::Release);
        }
    }
}

/// Confirms every obligation in `acks`.
pub(crate) fn confirm_all(acks: Vec<Pending>) {
    acks.into_iter().for_each(Pending::confirm);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_finding_settles_once_every_receiver_confirmed_or_fails_if_one_did_not() {
        let (t, receipt) = Ticket::issue(2);
        let receipt = tokio::spawn(receipt.wait());
        let a = Pending::new(t.clone());
        let a2 = a.share();
        let b = Pending::new(t.clone());
        let b2 = b.share();
        drop(t);
        a.confirm();
        b.confirm();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!receipt.is_finished(), "still owed by a2 and b2");
        a2.confirm();
        drop(b2); // this receiver gave up
        let report = receipt.await.unwrap();
        assert_eq!((report.delivered, report.failed), (1, 1));
    }
}
