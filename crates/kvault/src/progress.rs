//! A progress line on stderr every few seconds while a long operation runs, so an operator
//! watching a terminal (or a CI log) sees it is alive and how fast it goes.

use std::time::{Duration, Instant};

use kvault_domain::job::OperationControl;
use tokio::task::JoinHandle;

const INTERVAL: Duration = Duration::from_secs(5);

/// Prints `label: N messages, X MiB, R msg/s` every five seconds until dropped.
pub struct ProgressLine {
    task: JoinHandle<()>,
}

impl ProgressLine {
    pub fn start(label: String, control: OperationControl) -> Self {
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + INTERVAL, INTERVAL);
            loop {
                ticker.tick().await;
                let elapsed = started.elapsed().as_secs_f64();
                let snapshot = control.snapshot(elapsed);
                eprintln!(
                    "{label}: {} messages, {:.1} MiB, {:.0} msg/s, {:.0}s",
                    snapshot.messages,
                    snapshot.bytes as f64 / (1024.0 * 1024.0),
                    snapshot.messages_per_second,
                    elapsed
                );
            }
        });
        Self { task }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.task.abort();
    }
}
