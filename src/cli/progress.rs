//! Progress of a long command (`seed`, `key import`) on standard error: on a terminal a bar
//! with the count, the rate and the time left (a count and rate when the total is unknown);
//! off one nothing until the end. Either way it ends with one summary line, so a log of a
//! scripted run says how much was done and how fast.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

pub(crate) struct Progress {
    bar: ProgressBar,
    unit: &'static str,
    started: Instant,
}

impl Progress {
    /// `total` items to do, or `None` when not known in advance; `unit` names them (`keys`).
    pub(crate) fn new(total: Option<u64>, unit: &'static str) -> Self {
        let (bar, template) = match total {
            Some(total) => (
                ProgressBar::new(total),
                format!("{{wide_bar}} {{human_pos}}/{{human_len}} {unit}, {{rate}}, {{eta}} left"),
            ),
            None => (ProgressBar::no_length(), format!("{{spinner}} {{human_pos}} {unit}, {{rate}}")),
        };
        // The templates are fixed: a bad one is a bug caught by the tests, and costs only the bar.
        if let Ok(style) = ProgressStyle::with_template(&template) {
            let rate = |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = write!(out, "{:.0}/s", state.per_sec());
            };
            bar.set_style(style.with_key("rate", rate));
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Self { bar, unit, started: Instant::now() }
    }

    pub(crate) fn set(&self, done: u64) {
        self.bar.set_position(done);
    }

    pub(crate) fn inc(&self) {
        self.bar.inc(1);
    }

    /// Runs `print` with the bar out of the way, for a line of output between its redraws.
    pub(crate) fn suspend(&self, print: impl FnOnce()) {
        self.bar.suspend(print);
    }

    /// Clears the bar and prints `keygate: <what> in <seconds> s (<rate> <unit> a second)`.
    pub(crate) fn finish(&self, what: &str, count: u64) {
        self.bar.finish_and_clear();
        let seconds = self.started.elapsed().as_secs_f64();
        let rate = if seconds > 0.0 { count as f64 / seconds } else { 0.0 };
        eprintln!("keygate: {what} in {seconds:.1} s ({rate:.0} {} a second)", self.unit);
    }
}

impl Drop for Progress {
    /// A command that stops on an error leaves no half-drawn bar above its message.
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}
