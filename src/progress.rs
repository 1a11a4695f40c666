//! What a person at a terminal sees while files download: one progress line per file
//! (bytes, rate, time left), redrawn at most ten times a second, and a summary at the end.
//! When stderr is not a terminal (CI logs, pipes) none of this is drawn: only the plain
//! status lines. ocidl uses no colours, so `NO_COLOR` has nothing to turn off.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::text;

const REDRAW: Duration = Duration::from_millis(100);

/// Whether a progress line is on the screen now. There is one stderr per process, so one
/// flag: notes printed from anywhere (a retry deep in the registry client) can take the
/// line off first instead of being glued onto it.
static LINE_SHOWN: AtomicBool = AtomicBool::new(false);

/// Prints a note (a status line, a retry, an error) on stderr, on a line of its own, with
/// whatever a server put in it escaped (`text::escape`).
pub fn note(message: fmt::Arguments) {
    clear_line();
    eprintln!("{}", text::escape(&message.to_string()));
}

fn clear_line() {
    if LINE_SHOWN.swap(false, Ordering::Relaxed) {
        eprint!("\r\x1b[K");
    }
}

/// The one object that shows a run's progress and notes: drawn lines on a terminal, status
/// notes unless `--quiet`.
pub struct Progress {
    enabled: bool,
    quiet: bool,
    file: Option<File>,
    files: u64,
    bytes: u64,
    started: Instant,
}

struct File {
    name: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    drawn: Option<Instant>,
}

impl Progress {
    /// Drawn only on a terminal, and never with `-q`.
    pub fn new(quiet: bool) -> Progress {
        Progress {
            enabled: !quiet && std::io::stderr().is_terminal(),
            quiet,
            ..Progress::silent()
        }
    }

    /// Shows nothing at all: `--quiet`, and work no one should see (a config blob).
    pub fn silent() -> Progress {
        Progress {
            enabled: false,
            quiet: true,
            file: None,
            files: 0,
            bytes: 0,
            started: Instant::now(),
        }
    }

    /// A status note (`note`), unless `--quiet`.
    pub fn note(&self, message: fmt::Arguments) {
        if !self.quiet {
            note(message);
        }
    }

    pub fn start(&mut self, name: &str, total: Option<u64>) {
        self.file = Some(File {
            name: text::escape(name).into_owned(),
            total,
            done: 0,
            started: Instant::now(),
            drawn: None,
        });
    }

    /// Counts bytes as they arrive; bytes an earlier run left count when resumed.
    pub fn advance(&mut self, n: u64) {
        let Some(file) = &mut self.file else { return };
        file.done += n;
        let now = Instant::now();
        if self.enabled && file.drawn.is_none_or(|at| now - at >= REDRAW) {
            file.drawn = Some(now);
            eprint!("\r\x1b[K{}", file.line(now));
            let _ = std::io::stderr().flush();
            LINE_SHOWN.store(true, Ordering::Relaxed);
        }
    }

    /// Takes a file's line off the screen, before its status line is printed.
    pub fn end(&mut self, bytes: u64) {
        if self.file.take().is_some() {
            clear_line();
            self.files += 1;
            self.bytes += bytes;
        }
    }

    /// Learns the size once the server says it (a blob fetched by digest alone).
    pub fn expect(&mut self, total: Option<u64>) {
        if let Some(file) = &mut self.file {
            file.total = file.total.or(total);
        }
    }

    /// Forgets bytes that will come again (a server that restarted a blob).
    pub fn rewind(&mut self) {
        if let Some(file) = &mut self.file {
            file.done = 0;
        }
    }

    /// The last line on a terminal: how much, how long, how fast.
    pub fn summary(&self) {
        if self.enabled && self.files > 0 {
            let took = self.started.elapsed();
            eprintln!(
                "{} file{}, {} in {} s ({}/s)",
                self.files,
                if self.files == 1 { "" } else { "s" },
                human_size(self.bytes),
                seconds(took),
                human_size(per_second(self.bytes, took))
            );
        }
    }
}

impl File {
    fn line(&self, now: Instant) -> String {
        let rate = per_second(self.done, now - self.started);
        let mut line = format!("{}  {}", self.name, human_size(self.done));
        if let Some(total) = self.total.filter(|&t| t > 0) {
            let percent = (self.done as u128 * 100 / total as u128).min(100);
            line.push_str(&format!(" / {} ({percent}%)", human_size(total)));
            if rate > 0 {
                let left = total.saturating_sub(self.done).div_ceil(rate);
                line.push_str(&format!("  {}/s  {} left", human_size(rate), clock(left)));
            }
        } else {
            line.push_str(&format!("  {}/s", human_size(rate)));
        }
        line
    }
}

// Integers only: formatting a float would link a float printer for three digits.

/// Bytes a second over `took` (at least a millisecond).
fn per_second(bytes: u64, took: Duration) -> u64 {
    let millis = took.as_millis().max(1);
    (bytes as u128 * 1000 / millis).min(u64::MAX as u128) as u64
}

/// A duration in seconds with one decimal: `2.5`.
pub fn seconds(d: Duration) -> String {
    let tenths = (d.as_millis() + 50) / 100;
    format!("{}.{}", tenths / 10, tenths % 10)
}

fn clock(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Sizes as `ls -h` shows them, in binary units.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Tenths of the unit, rounded as `{:.1}` would.
    let mut unit = 0;
    let mut scale: u128 = 1024;
    while bytes as u128 >= scale * 1024 && unit < UNITS.len() - 1 {
        scale *= 1024;
        unit += 1;
    }
    let tenths = (bytes as u128 * 10 + scale / 2) / scale;
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_ls_h() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1536 * 1024), "1.5 MiB");
        assert_eq!(human_size(1 << 30), "1.0 GiB");
    }

    #[test]
    fn lines_show_bytes_rate_and_time_left() {
        let started = Instant::now();
        let file = File {
            name: "trurl".into(),
            total: Some(4 << 20),
            done: 1 << 20,
            started,
            drawn: None,
        };
        let line = file.line(started + Duration::from_secs(1));
        assert_eq!(line, "trurl  1.0 MiB / 4.0 MiB (25%)  1.0 MiB/s  3s left");
        let unknown = File {
            total: None,
            ..file
        };
        assert_eq!(
            unknown.line(started + Duration::from_secs(2)),
            "trurl  1.0 MiB  512.0 KiB/s"
        );
        assert_eq!(clock(75), "1m15s");
        assert_eq!(clock(7300), "2h01m");
        assert_eq!(seconds(Duration::from_millis(2449)), "2.4");
        assert_eq!(seconds(Duration::from_millis(250)), "0.3");
        assert_eq!(human_size(1024 * 1024 - 1), "1024.0 KiB");
        assert_eq!(human_size(3 * 1024 * 1024 + 52429), "3.1 MiB");
    }
}
