//! The progress bar while a run goes (indicatif), hidden when stdout is not a
//! terminal or with `--quiet`; phase lines are printed either way unless quiet.

use super::sim::Sim;
use super::stats::Op;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often the bar's counts are refreshed.
const REFRESH: Duration = Duration::from_millis(250);

/// The bar and whether phase lines are printed.
#[derive(Clone)]
pub(crate) struct Progress {
    bar: ProgressBar,
    quiet: bool,
}

impl Progress {
    pub(crate) fn new(quiet: bool) -> Progress {
        let target = if quiet || !std::io::stdout().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stdout()
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        let style = ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {msg}")
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Progress { bar, quiet }
    }

    /// A line about the run (above the bar).
    pub(crate) fn say(&self, line: &str) {
        if !self.quiet {
            self.bar.suspend(|| println!("{line}"));
        }
    }

    /// A new phase of `length` steps.
    pub(crate) fn phase(&self, name: &str, length: u64) {
        self.bar.set_prefix(name.to_owned());
        self.bar.set_length(length);
        self.bar.set_position(0);
    }

    pub(crate) fn step(&self) {
        self.bar.inc(1);
    }

    pub(crate) fn set(&self, position: u64) {
        self.bar.set_position(position);
    }

    /// Refreshes the bar's message from the statistics until `until` is done.
    pub(crate) async fn follow(&self, sim: Arc<Sim>, until: tokio::time::Instant) {
        while tokio::time::Instant::now() < until {
            tokio::time::sleep(REFRESH.min(until - tokio::time::Instant::now())).await;
            self.bar.set_message(format!(
                "booked {} offers {} completed {} refused {} errors {}",
                sim.jobs.booked.load(Ordering::Relaxed),
                sim.stats.offers_received.load(Ordering::Relaxed),
                sim.stats.ok_count(Op::Complete),
                sim.stats.refusals(),
                sim.stats.real_errors(),
            ));
        }
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
