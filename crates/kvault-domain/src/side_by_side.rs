//! Running the parts of one operation a few at a time: the topics of a backup set, or of its
//! restore. Parts start in order, at most `parallelism` run at once, each with a control of its
//! own within the operation's (shared progress and cancellation; see
//! [`OperationControl::part`]). The first part to fail stops the parts still running and no
//! other part starts; what the parts that finished returned is handed back with the failure,
//! so the caller can say what was done (or undo it).

use std::future::Future;

use futures::stream::{FuturesUnordered, StreamExt};

use crate::error::{DomainError, DomainResult};
use crate::job::OperationControl;

/// Topics a backup set runs at once unless configured otherwise (`workers.set_parallelism`).
pub const DEFAULT_SET_PARALLELISM: usize = 4;

/// Topics a set restore runs at once unless configured otherwise
/// (`workers.set_restore_parallelism`).
pub const DEFAULT_SET_RESTORE_PARALLELISM: usize = 8;

/// How running the parts ended when one failed.
#[derive(Debug)]
pub struct PartFailure<T> {
    /// The part that failed first.
    pub index: usize,
    pub error: DomainError,
    /// The parts that finished, in order, each with its index.
    pub finished: Vec<(usize, T)>,
    /// Parts that never started (they come after every part that did).
    pub not_started: std::ops::Range<usize>,
}

/// Runs `run(i, part)` for every `i` in `0..count` as described in the module doc; on
/// success, every part's result in order.
pub async fn run_parts<T, F, Fut>(
    count: usize,
    parallelism: usize,
    control: &OperationControl,
    mut run: F,
) -> Result<Vec<T>, PartFailure<T>>
where
    F: FnMut(usize, OperationControl) -> Fut,
    Fut: Future<Output = DomainResult<T>>,
{
    let mut running = FuturesUnordered::new();
    let mut parts: Vec<OperationControl> = Vec::new();
    let mut finished: Vec<(usize, T)> = Vec::with_capacity(count);
    let mut failure: Option<(usize, DomainError)> = None;
    let mut next = 0;
    loop {
        while failure.is_none() && next < count && running.len() < parallelism.max(1) {
            let part = control.part();
            parts.push(part.clone());
            let i = next;
            let future = run(i, part);
            running.push(async move { (i, future.await) });
            next += 1;
        }
        let Some((i, outcome)) = running.next().await else {
            break;
        };
        match outcome {
            Ok(value) => finished.push((i, value)),
            // A part stopped because another failed is not the cause.
            Err(DomainError::Cancelled) if failure.is_some() => {}
            Err(error) => {
                if failure.is_none() {
                    parts.iter().for_each(OperationControl::stop_part);
                    failure = Some((i, error));
                }
            }
        }
    }
    finished.sort_by_key(|(i, _)| *i);
    match failure {
        None => Ok(finished.into_iter().map(|(_, value)| value).collect()),
        Some((index, error)) => Err(PartFailure {
            index,
            error,
            finished,
            not_started: next..count,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    fn block_on<F: Future>(future: F) -> F::Output {
        futures::executor::block_on(future)
    }

    #[test]
    fn parts_run_a_few_at_a_time_and_come_back_in_order() {
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let control = OperationControl::new();
        let results = block_on(run_parts(7, 3, &control, |i, _| {
            let (now, most) = (&now, &most);
            async move {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(running, Ordering::SeqCst);
                // Later parts finish first: the results still come back in order.
                futures_timer(Duration::from_millis(10 * (7 - i as u64))).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(i * 10)
            }
        }))
        .unwrap();
        assert_eq!(results, vec![0, 10, 20, 30, 40, 50, 60]);
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn the_first_failure_stops_the_running_parts_and_starts_no_more() {
        let control = OperationControl::new();
        let failed = block_on(run_parts::<(), _, _>(
            10,
            3,
            &control,
            |i, part| async move {
                if i == 1 {
                    return Err(DomainError::internal("part 1 broke"));
                }
                // The others run until they are stopped.
                while !part.is_cancelled() {
                    futures_timer(Duration::from_millis(1)).await;
                }
                Err(DomainError::Cancelled)
            },
        ))
        .unwrap_err();
        assert_eq!(failed.index, 1);
        assert!(failed.error.to_string().contains("part 1 broke"));
        assert!(failed.finished.is_empty());
        assert_eq!(failed.not_started, 3..10);
        assert!(
            !control.is_cancelled(),
            "the operation itself is not cancelled"
        );
    }

    /// A timer without a runtime: a thread that sleeps, for these tests only.
    async fn futures_timer(duration: Duration) {
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        std::thread::spawn(move || {
            std::thread::sleep(duration);
            let _ = tx.send(());
        });
        let _ = rx.await;
    }
}
