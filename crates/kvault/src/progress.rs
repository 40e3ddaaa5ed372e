//! Progress of a long CLI run on stderr, so an operator sees it is alive, how fast it goes and
//! when it will end: a live bar (indicatif) on a terminal, a line every few seconds on anything
//! else (a CI log keeps readable lines, not bar redraws), nothing with `--quiet`. stdout is
//! left to the JSON result either way.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kvault_domain::job::OperationControl;
use tokio::task::JoinHandle;

const LINE_INTERVAL: Duration = Duration::from_secs(5);
const BAR_INTERVAL: Duration = Duration::from_millis(200);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// A bar redrawn in place: stderr is a terminal.
    Bar,
    /// A line every five seconds: stderr is a file or a pipe.
    Lines,
    /// Nothing (`--quiet`).
    Quiet,
}

impl Display {
    /// The display for this process: a bar on a terminal, lines otherwise, nothing when quiet.
    pub fn detect(quiet: bool) -> Self {
        if quiet {
            Self::Quiet
        } else if std::io::stderr().is_terminal() {
            Self::Bar
        } else {
            Self::Lines
        }
    }
}

/// Shows `control`'s progress until dropped. The total (for the bar's length and the ETA) is
/// the one the operation announces with [`OperationControl::set_total`], once it knows it.
pub struct Progress {
    task: Option<JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn start(display: Display, label: String, control: OperationControl) -> Self {
        match display {
            Display::Quiet => Self {
                task: None,
                bar: None,
            },
            Display::Lines => Self {
                task: Some(tokio::spawn(lines(label, control))),
                bar: None,
            },
            Display::Bar => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(spinner_style());
                bar.set_prefix(label);
                let task = tokio::spawn(redraw(bar.clone(), control));
                Self {
                    task: Some(task),
                    bar: Some(bar),
                }
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// `label: N messages, X MiB, R msg/s, Ts` (and `of TOTAL, ETA` when known) every five seconds.
async fn lines(label: String, control: OperationControl) {
    let started = Instant::now();
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + LINE_INTERVAL, LINE_INTERVAL);
    loop {
        ticker.tick().await;
        eprintln!("{}", line(&label, &control, started.elapsed()));
    }
}

/// One progress line.
pub fn line(label: &str, control: &OperationControl, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let snapshot = control.snapshot(secs);
    let of_total = match control.total() {
        Some(total) if total > 0 => {
            let left = total.saturating_sub(snapshot.messages);
            let eta = if snapshot.messages_per_second > 0.0 {
                format!(", ETA {:.0}s", left as f64 / snapshot.messages_per_second)
            } else {
                String::new()
            };
            format!(
                " of {total} ({:.0}%{eta})",
                snapshot.messages as f64 * 100.0 / total as f64
            )
        }
        _ => String::new(),
    };
    format!(
        "{label}: {} messages{of_total}, {}, {:.0} msg/s, {secs:.0}s",
        snapshot.messages,
        HumanBytes(snapshot.bytes),
        snapshot.messages_per_second,
    )
}

async fn redraw(bar: ProgressBar, control: OperationControl) {
    let mut with_total = false;
    let mut ticker = tokio::time::interval(BAR_INTERVAL);
    loop {
        ticker.tick().await;
        if let (false, Some(total)) = (with_total, control.total()) {
            bar.set_length(total);
            bar.set_style(bar_style());
            with_total = true;
        }
        bar.set_position(control.messages());
        bar.set_message(HumanBytes(control.bytes()).to_string());
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix} [{bar:30}] {human_pos}/{human_len} msgs, {msg}, {per_sec}, ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix}: {human_pos} msgs, {msg}, {per_sec}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_the_total_and_an_eta_once_known() {
        let control = OperationControl::new();
        control.add(500, 2048);
        let plain = line("backup b1", &control, Duration::from_secs(5));
        assert!(
            plain.starts_with("backup b1: 500 messages, 2.00 KiB, 100 msg/s"),
            "{plain}"
        );
        control.set_total(1000);
        let with_total = line("backup b1", &control, Duration::from_secs(5));
        assert!(
            with_total.contains("500 messages of 1000 (50%, ETA 5s)"),
            "{with_total}"
        );
    }

    #[test]
    fn quiet_shows_nothing() {
        assert_eq!(Display::detect(true), Display::Quiet);
    }
}
