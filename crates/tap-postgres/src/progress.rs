//! Progress lines on stderr: every `progress_interval_seconds` (default 10;
//! 0 turns them off) one INFO line per active stream with its rows, its
//! rate since the last line, and for a copy the share of the estimated row
//! count (`pg_class.reltuples`), or for LOG_BASED the lag behind the
//! server's WAL in bytes.
//!
//! When stderr is a terminal, a live progress bar per stream (indicatif)
//! takes the place of the lines.
//!
//! The hot path pays one increment per row; the clock is read every 1024
//! rows.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One stream's progress.
pub struct Progress {
    stream: String,
    what: &'static str,
    every: Option<Duration>,
    estimate: Option<u64>,
    rows: u64,
    last_rows: u64,
    last: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Progress of `stream`; `what` names the unit (`rows`, `changes`);
    /// `estimate` is the expected total, if known.
    pub fn new(
        stream: &str,
        what: &'static str,
        every: Duration,
        estimate: Option<u64>,
    ) -> Progress {
        let estimate = estimate.filter(|e| *e > 0);
        let every = (!every.is_zero()).then_some(every);
        let bar = (every.is_some() && std::io::stderr().is_terminal()).then(|| {
            let (bar, template) = match estimate {
                Some(total) => (
                    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
                    "{msg} [{bar:30}] {pos}/{len} {per_sec} {percent}% eta {eta}",
                ),
                None => (
                    ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
                    "{msg} {spinner} {pos} {per_sec}",
                ),
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(format!("{stream} ({what})"));
            bar
        });
        Progress {
            stream: stream.to_string(),
            what,
            every,
            estimate,
            rows: 0,
            last_rows: 0,
            last: Instant::now(),
            bar,
        }
    }

    /// Counts one row, and logs when the interval has passed.
    #[inline]
    pub fn row(&mut self) {
        self.rows += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
            return;
        }
        if self.rows.is_multiple_of(1024) {
            self.tick(None);
        }
    }

    /// Rows counted so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Logs a line if the interval has passed; `lag_bytes` for LOG_BASED.
    pub fn tick(&mut self, lag_bytes: Option<u64>) {
        if let Some(bar) = &self.bar {
            if let Some(lag) = lag_bytes {
                bar.set_message(format!(
                    "{} ({}, {lag} bytes behind)",
                    self.stream, self.what
                ));
            }
            return;
        }
        let Some(every) = self.every else { return };
        let elapsed = self.last.elapsed();
        if elapsed < every {
            return;
        }
        let rate = (self.rows - self.last_rows) as f64 / elapsed.as_secs_f64();
        let mut line = format!(
            "stream {}: {} {}, {:.0} {}/s",
            self.stream, self.rows, self.what, rate, self.what
        );
        if let Some(total) = self.estimate {
            line.push_str(&format!(
                ", {:.0}% of about {total}",
                (self.rows as f64 * 100.0 / total as f64).min(100.0)
            ));
        }
        if let Some(lag) = lag_bytes {
            line.push_str(&format!(", {lag} bytes of WAL behind the server"));
        }
        tracing::info!("{line}");
        self.last = Instant::now();
        self.last_rows = self.rows;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
