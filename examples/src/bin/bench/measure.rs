//! What a measurement reads: CPU time of this process (getrusage), resident
//! memory, the broker's CPU time, latency histograms.

use nix::sys::{
    resource::{UsageWho, getrusage},
    time::TimeValLike,
};
use std::time::Duration;

/// User plus system CPU time this process has used, all threads included.
pub(crate) fn cpu_time() -> Duration {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => Duration::from_micros(
            (usage.user_time().num_microseconds() + usage.system_time().num_microseconds()).max(0)
                as u64,
        ),
        Err(_) => Duration::ZERO,
    }
}

/// Context switches (voluntary and not) of all the threads of process `pid`
/// (`self` for this one): each is a handoff between threads, the main cost
/// of a call at low load.
pub(crate) fn context_switches(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .map(|status| {
            status
                .lines()
                .filter(|line| line.contains("ctxt_switches:"))
                .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Resident memory of process `pid` (`self` for this one), in KiB.
pub(crate) fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The broker's Erlang VM, if it runs on this machine and we may read it.
#[derive(Debug, Clone)]
pub(crate) struct Broker {
    pid: u32,
    ticks_per_second: u64,
}

impl Broker {
    /// The broker with process id `pid`.
    pub(crate) fn with_pid(pid: u32) -> Option<Self> {
        let ticks_per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()? as u64;
        Some(Self {
            pid,
            ticks_per_second,
        })
    }

    /// Finds the machine's RabbitMQ: the `beam.smp` process booting `rabbit`
    /// whose home is the Debian package's (private test nodes have homes of
    /// their own), or else the only one booting `rabbit`.
    pub(crate) fn find() -> Option<Self> {
        let mut rabbits = Vec::new();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse().ok())
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|&byte| byte == 0).collect();
            let is_beam = args
                .first()
                .is_some_and(|program| program.ends_with(b"beam.smp"));
            let boots_rabbit = args
                .windows(2)
                .any(|pair| pair == [&b"rabbit"[..], &b"boot"[..]]);
            if is_beam && boots_rabbit {
                let packaged = args
                    .windows(2)
                    .any(|pair| pair == [&b"-home"[..], &b"/var/lib/rabbitmq"[..]]);
                rabbits.push((packaged, pid));
            }
        }
        let pid = match rabbits.iter().find(|(packaged, _)| *packaged) {
            Some(&(_, pid)) => pid,
            None if rabbits.len() == 1 => rabbits[0].1,
            None => return None,
        };
        Self::with_pid(pid)
    }

    /// CPU time the broker has used (10 ms resolution: read over runs of a
    /// second or more).
    pub(crate) fn cpu_time(&self) -> Duration {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return Duration::ZERO;
        };
        // Fields after the command name (which may hold spaces): utime is
        // the 14th field of the line, stime the 15th.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|field| field.parse::<u64>().ok()))
            .sum();
        Duration::from_secs_f64(ticks as f64 / self.ticks_per_second as f64)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }
}

/// A latency histogram in microseconds, from 1 µs to 60 s.
pub(crate) fn histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// The median of `values` (the mean of the middle two for an even count).
pub(crate) fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// A 95% interval for the median of `values`, from their order statistics
/// (no assumption about their distribution): `None` under six values.
pub(crate) fn median_interval(values: &mut [f64]) -> Option<(f64, f64)> {
    let n = values.len();
    if n < 6 {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    // Ranks n/2 -+ 1.96 sqrt(n)/2 (the normal approximation of the binomial
    // count of values below the median), 1-based.
    let half_width = 0.98 * (n as f64).sqrt();
    let low = ((n as f64 / 2.0 - half_width).floor() as usize).max(1);
    let high = ((n as f64 / 2.0 + 1.0 + half_width).ceil() as usize).min(n);
    Some((values[low - 1], values[high - 1]))
}

#[cfg(test)]
mod tests {
    use super::{median, median_interval};

    #[test]
    fn the_interval_holds_the_median_and_narrows_with_more_values() {
        let mut few: Vec<f64> = (1..=10).map(f64::from).collect();
        let mut many: Vec<f64> = (1..=100).map(|i| f64::from(i) / 10.0).collect();
        let (low, high) = median_interval(&mut few).expect("ten values");
        assert!(low <= median(&mut few) && median(&mut few) <= high);
        assert_eq!((low, high), (1.0, 10.0));
        let (low, high) = median_interval(&mut many).expect("a hundred values");
        assert_eq!((low, high), (4.0, 6.1));
        assert_eq!(median_interval(&mut [1.0, 2.0, 3.0]), None);
    }
}
