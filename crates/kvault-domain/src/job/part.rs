//! The control of one part of an operation run beside others (the topics of a backup set, or
//! of its restore): it shares the operation's counts, total, journal and cancellation, keeps
//! its own share of the counts, and can be stopped alone when a sibling failed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::OperationControl;

/// What a part keeps of its own: its share of the counts (so it can start its counts again
/// without touching its siblings'), and its stop.
#[derive(Debug, Default)]
pub(super) struct PartInner {
    messages: AtomicU64,
    bytes: AtomicU64,
    stopped: AtomicBool,
}

impl PartInner {
    pub(super) fn add(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// This part's counts so far, which start again from zero.
    pub(super) fn take_counts(&self) -> (u64, u64) {
        (
            self.messages.swap(0, Ordering::Relaxed),
            self.bytes.swap(0, Ordering::Relaxed),
        )
    }
}

impl OperationControl {
    /// A control for one part of this operation run beside others: its counts and the
    /// operation's total are this control's, it is cancelled with it, and
    /// [`OperationControl::stop_part`] stops it alone.
    pub fn part(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            journal: self.journal.clone(),
            part: Some(Arc::default()),
        }
    }

    /// Stops this part (it sees itself cancelled); on a whole operation's control, nothing.
    pub fn stop_part(&self) {
        if let Some(part) = &self.part {
            part.stopped.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_counts_into_the_whole_restarts_alone_and_stops_alone() {
        let whole = OperationControl::new();
        let (a, b) = (whole.part(), whole.part());
        a.add(10, 100);
        b.add(5, 50);
        assert_eq!((whole.messages(), whole.bytes()), (15, 150));
        a.reset_progress();
        assert_eq!(
            (whole.messages(), whole.bytes()),
            (5, 50),
            "b's counts stay"
        );
        a.add(2, 20);
        assert_eq!(whole.messages(), 7);
        a.stop_part();
        assert!(a.is_cancelled());
        assert!(!b.is_cancelled() && !whole.is_cancelled());
        whole.stop_part();
        assert!(!whole.is_cancelled(), "stop_part stops parts only");
        whole.cancel();
        assert!(b.is_cancelled(), "cancelling the whole cancels every part");
    }
}
