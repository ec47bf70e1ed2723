//! Logs that input cannot flood.
//!
//! A server logs every request it refuses or cannot run (a fault), once, at
//! WARN, with the method, the correlation id and the reason: that is how an
//! operator learns that a client sends bad requests. But the input comes
//! from the network: a client sending a million malformed requests must not
//! write a million lines. So such lines draw on a budget of
//! [`LINES_PER_WINDOW`] per [`WINDOW`] per server; past it, lines are
//! counted instead of written, and the next line written says how many were
//! left out (`suppressed = N`).

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

/// How many lines a server writes per window at most.
pub(crate) const LINES_PER_WINDOW: u32 = 10;
/// The window.
pub(crate) const WINDOW: Duration = Duration::from_secs(1);

/// One server's budget of lines.
#[derive(Debug)]
pub(crate) struct LogBudget(Mutex<Window>);

#[derive(Debug)]
struct Window {
    started: Instant,
    written: u32,
    suppressed: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self(Mutex::new(Window {
            started: Instant::now(),
            written: 0,
            suppressed: 0,
        }))
    }
}

impl LogBudget {
    /// Whether one more line may be written now: `Some(n)`, with the number
    /// of lines left out since the last one written, or `None` (the line is
    /// counted as left out).
    pub(crate) fn take(&self) -> Option<u64> {
        let mut window = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if window.started.elapsed() >= WINDOW {
            window.started = Instant::now();
            window.written = 0;
        }
        if window.written >= LINES_PER_WINDOW {
            window.suppressed += 1;
            return None;
        }
        window.written += 1;
        Some(std::mem::take(&mut window.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_writes_a_window_of_lines_then_counts_the_rest() {
        let budget = LogBudget::default();
        let written = (0..1000).filter_map(|_| budget.take()).count();
        assert_eq!(written, LINES_PER_WINDOW as usize);
        // The next window's first line tells how many were left out.
        budget.0.lock().expect("lock").started -= WINDOW;
        assert_eq!(budget.take(), Some(1000 - u64::from(LINES_PER_WINDOW)));
        assert_eq!(budget.take(), Some(0));
    }
}
