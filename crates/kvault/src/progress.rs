//! Progress of a long CLI run on stderr, so an operator sees it is alive, how fast it goes and
//! when it will end: a live bar (indicatif) on a terminal, a line every few seconds on anything
//! else (a CI log keeps readable lines, not bar redraws), nothing with `--quiet`. stdout is
//! left to the JSON result either way.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{
    HumanBytes, HumanCount, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle,
};
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
    control: OperationControl,
}

impl Progress {
    pub fn start(display: Display, label: String, control: OperationControl) -> Self {
        match display {
            Display::Quiet => Self {
                task: None,
                bar: None,
                control,
            },
            Display::Lines => Self {
                task: Some(tokio::spawn(lines(label, control.clone()))),
                bar: None,
                control,
            },
            Display::Bar => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(spinner_style());
                bar.set_prefix(label);
                let task = tokio::spawn(redraw(bar.clone(), control.clone()));
                Self {
                    task: Some(task),
                    bar: Some(bar),
                    control,
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
            // The last redraw can be up to a tick old: the bar is left showing the final
            // counts, not the ones of a moment before the end.
            draw(&bar, &self.control, &mut true);
            bar.abandon();
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
        "{label}: {} messages{of_total}, {}, {}, {secs:.0}s",
        snapshot.messages,
        HumanBytes(snapshot.bytes),
        rate(snapshot.messages_per_second),
    )
}

async fn redraw(bar: ProgressBar, control: OperationControl) {
    let mut with_total = false;
    let mut ticker = tokio::time::interval(BAR_INTERVAL);
    loop {
        ticker.tick().await;
        draw(&bar, &control, &mut with_total);
    }
}

/// Brings the bar up to `control`'s counts (switching to a bar with a length once the total
/// is known; `with_total` says whether it already did).
fn draw(bar: &ProgressBar, control: &OperationControl, with_total: &mut bool) {
    match control.total() {
        Some(total) if !*with_total || bar.length() != Some(total) => {
            bar.set_length(total);
            bar.set_style(bar_style());
            *with_total = true;
        }
        _ => {}
    }
    bar.set_position(control.messages());
    bar.set_message(HumanBytes(control.bytes()).to_string());
}

/// `12,345 msg/s`: whole messages per second with thousands separators (indicatif's own
/// `{per_sec}` prints four decimals).
pub fn rate(messages_per_second: f64) -> String {
    format!(
        "{} msg/s",
        HumanCount(messages_per_second.max(0.0).round() as u64)
    )
}

fn rate_key(state: &ProgressState, out: &mut dyn std::fmt::Write) {
    let _ = out.write_str(&rate(state.per_sec()));
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix} [{bar:30}] {human_pos}/{human_len} msgs, {msg}, {rate}, ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key("rate", rate_key)
    .progress_chars("=> ")
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix}: {human_pos} msgs, {msg}, {rate}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .with_key("rate", rate_key)
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
    fn rates_are_whole_messages_per_second_with_separators() {
        assert_eq!(rate(176_730.519_3), "176,731 msg/s");
        assert_eq!(rate(0.4), "0 msg/s");
        let control = OperationControl::new();
        control.add(1_767_305, 0);
        let shown = line("verify b1", &control, Duration::from_secs(10));
        assert!(shown.contains(", 176,731 msg/s, 10s"), "{shown}");
    }

    #[test]
    fn a_finished_bar_shows_the_final_counts() {
        let control = OperationControl::new();
        control.set_total(300);
        control.add(36, 0);
        let bar = ProgressBar::hidden();
        let mut with_total = false;
        draw(&bar, &control, &mut with_total);
        control.add(264, 4096);
        let progress = Progress {
            task: None,
            bar: Some(bar.clone()),
            control,
        };
        drop(progress);
        assert_eq!((bar.position(), bar.length()), (300, Some(300)));
        assert_eq!(bar.message(), "4.00 KiB");
    }

    #[test]
    fn quiet_shows_nothing() {
        assert_eq!(Display::detect(true), Display::Quiet);
    }
}
