//! The benchmark's report: medians over the rounds, ratios of each peer to
//! the baseline (A/B with the default two peers), a Markdown table and an SVG
//! chart.
//!
//! Each ratio A/B is the median of the rounds' own ratios: a round measures A
//! and B back to back, so what the machine does to both in that stretch
//! (the broker's state, the other processes) cancels out in its ratio,
//! which is steadier than the ratio of the two peers' medians.

use crate::{
    Method, Options, Peer,
    measure::{median, median_interval},
};
use plotters::{element::DashedPathElement, prelude::*};
use std::{collections::BTreeMap, fmt, time::Duration};

/// One measurement of one peer, method and number of calls in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Point {
    pub(crate) calls_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub(crate) client_cpu_us: f64,
    pub(crate) server_cpu_us: f64,
    pub(crate) broker_cpu_us: Option<f64>,
    /// Context switches per call, client and server processes.
    pub(crate) client_switches: f64,
    pub(crate) server_switches: f64,
}

impl Point {
    pub(crate) fn new(
        calls: usize,
        elapsed: Duration,
        latencies: &hdrhistogram::Histogram<u64>,
        (client_cpu, server_cpu, broker_cpu): (Duration, Duration, Option<Duration>),
        (client_switches, server_switches): (u64, u64),
    ) -> Self {
        let per_call = |cpu: Duration| cpu.as_secs_f64() * 1e6 / calls as f64;
        Self {
            calls_per_s: calls as f64 / elapsed.as_secs_f64(),
            p50_us: latencies.value_at_quantile(0.5) as f64,
            p99_us: latencies.value_at_quantile(0.99) as f64,
            client_cpu_us: per_call(client_cpu),
            server_cpu_us: per_call(server_cpu),
            broker_cpu_us: broker_cpu.map(per_call),
            client_switches: client_switches as f64 / calls as f64,
            server_switches: server_switches as f64 / calls as f64,
        }
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>7.0} calls/s, p50 {:>6.0} us, p99 {:>6.0} us, cpu/call client {:>5.1} us server {:>5.1} us",
            self.calls_per_s, self.p50_us, self.p99_us, self.client_cpu_us, self.server_cpu_us
        )?;
        if let Some(broker) = self.broker_cpu_us {
            write!(f, " broker {broker:>5.1} us")?;
        }
        write!(
            f,
            ", switches/call client {:.2} server {:.2}",
            self.client_switches, self.server_switches
        )
    }
}

type Key = (&'static str, usize);

/// A ratio A/B over the rounds.
struct Ratio {
    median: f64,
    interval: Option<(f64, f64)>,
}

impl fmt::Display for Ratio {
    /// `**0.98** (0.95-1.01)`: bold, as the figure the targets are read on.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "**{:.2}**", self.median)?;
        match self.interval {
            Some((low, high)) => write!(f, " ({low:.2}-{high:.2})"),
            None => Ok(()),
        }
    }
}

/// Everything measured.
pub(crate) struct Report {
    options: Options,
    broker_pid: Option<u32>,
    points: BTreeMap<(Key, &'static str), Vec<Point>>,
    /// Per peer: the resident KiB of its idle server, and (idle resident
    /// KiB, bytes per call in flight) of its client.
    memory: BTreeMap<&'static str, (u64, (u64, u64))>,
}

/// The medians of a series of points.
#[derive(Debug, Clone, Copy)]
struct Medians {
    calls_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    client_cpu_us: f64,
    server_cpu_us: f64,
    broker_cpu_us: Option<f64>,
    client_switches: f64,
    server_switches: f64,
}

impl Medians {
    fn broker(&self) -> String {
        self.broker_cpu_us
            .map_or("-".to_owned(), |us| format!("{us:.1}"))
    }
}

fn medians(points: &[Point]) -> Medians {
    let of = |get: fn(&Point) -> f64| median(&mut points.iter().map(get).collect::<Vec<_>>());
    let broker: Vec<f64> = points
        .iter()
        .filter_map(|point| point.broker_cpu_us)
        .collect();
    Medians {
        calls_per_s: of(|point| point.calls_per_s),
        p50_us: of(|point| point.p50_us),
        p99_us: of(|point| point.p99_us),
        client_cpu_us: of(|point| point.client_cpu_us),
        server_cpu_us: of(|point| point.server_cpu_us),
        broker_cpu_us: (!broker.is_empty()).then(|| median(&mut broker.clone())),
        client_switches: of(|point| point.client_switches),
        server_switches: of(|point| point.server_switches),
    }
}

impl Report {
    pub(crate) fn new(options: &Options, broker_pid: Option<u32>) -> Self {
        Self {
            options: options.clone(),
            broker_pid,
            points: BTreeMap::new(),
            memory: BTreeMap::new(),
        }
    }

    pub(crate) fn add(&mut self, peer: Peer, method: Method, in_flight: usize, point: Point) {
        self.points
            .entry(((method.name(), in_flight), peer.name()))
            .or_default()
            .push(point);
    }

    /// Records `peer`'s idle server's resident KiB and its client's
    /// (idle resident KiB, bytes per call in flight).
    pub(crate) fn set_memory(&mut self, peer: Peer, idle_server_kib: u64, footprint: (u64, u64)) {
        self.memory
            .insert(peer.name(), (idle_server_kib, footprint));
    }

    /// `peer`'s letter: A for the first peer listed, B for the second, ...
    fn letter(&self, peer: Peer) -> char {
        let index = self
            .options
            .peers
            .iter()
            .position(|&listed| listed == peer)
            .unwrap_or(0);
        char::from(b'A' + (index % 26) as u8)
    }

    fn points(&self, method: Method, in_flight: usize, peer: Peer) -> &[Point] {
        self.points
            .get(&((method.name(), in_flight), peer.name()))
            .map_or(&[][..], Vec::as_slice)
    }

    /// The median over the rounds of `peer`'s `metric` over `baseline`'s in
    /// the same round, and a 95% interval for that median.
    fn ratio(
        &self,
        (peer, baseline): (Peer, Peer),
        method: Method,
        in_flight: usize,
        metric: fn(&Point) -> f64,
    ) -> Ratio {
        let mut ratios: Vec<f64> = self
            .points(method, in_flight, peer)
            .iter()
            .zip(self.points(method, in_flight, baseline))
            .map(|(a, b)| metric(a) / metric(b))
            .collect();
        Ratio {
            median: median(&mut ratios),
            interval: median_interval(&mut ratios),
        }
    }

    fn medians(&self, method: Method, in_flight: usize, peer: Peer) -> Option<Medians> {
        self.points
            .get(&((method.name(), in_flight), peer.name()))
            .map(|points| medians(points))
    }

    /// The results as Markdown: with two peers A and B, one table of both
    /// and A/B; with more, one such table per peer against the baseline;
    /// with one, its medians.
    pub(crate) fn markdown(&self) -> String {
        let options = &self.options;
        let baseline = options.baseline();
        let others: Vec<Peer> = options
            .peers
            .iter()
            .copied()
            .filter(|&peer| peer != baseline)
            .collect();
        let legend = options
            .peers
            .iter()
            .map(|&peer| format!("{}: {}", self.letter(peer), peer.label()))
            .collect::<Vec<_>>()
            .join(", ");
        let ratios = others
            .iter()
            .map(|&peer| format!("{}/{}", self.letter(peer), self.letter(baseline)))
            .collect::<Vec<_>>()
            .join(", ");
        let mut out = String::new();
        out.push_str(&format!(
            "Medians of {} interleaved rounds of {} calls; {legend}; {}publisher confirms: {}; \
             prefetch {}; {} Tokio worker(s) per process; broker CPU {}.\n\n",
            options.rounds,
            options.calls,
            if others.is_empty() {
                String::new()
            } else {
                format!(
                    "{ratios}: the median of the rounds' own ratios, with a 95% interval for it; "
                )
            },
            match (crate::service::confirms(), crate::service::raw_confirms()) {
                (true, true) => "every peer",
                (true, false) => "the framework's peers only",
                (false, _) => "none",
            },
            options.prefetch,
            options.workers,
            match self.broker_pid {
                Some(pid) => format!("read from /proc/{pid}"),
                None => "not measured (broker not found on this machine)".to_owned(),
            }
        ));
        if others.is_empty() {
            out.push_str(&self.single_table(baseline));
        }
        for (i, &peer) in others.iter().enumerate() {
            if others.len() > 1 {
                out.push_str(&format!(
                    "{}{} ({}) against {} ({}):\n\n",
                    if i > 0 { "\n" } else { "" },
                    self.letter(peer),
                    peer.label(),
                    self.letter(baseline),
                    baseline.label()
                ));
            }
            out.push_str(&self.pair_table(peer, baseline));
        }
        out.push_str("\n| memory |");
        for &peer in &options.peers {
            out.push_str(&format!(" {} ({}) |", self.letter(peer), peer.label()));
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(options.peers.len()));
        out.push('\n');
        let row = |name: String, cell: &dyn Fn(u64, (u64, u64)) -> String| {
            let mut row = format!("| {name} |");
            for peer in &options.peers {
                let (server, client) = self.memory.get(peer.name()).copied().unwrap_or_default();
                row.push_str(&format!(" {} |", cell(server, client)));
            }
            row.push('\n');
            row
        };
        out.push_str(&row("idle client, resident".to_owned(), &|_, (idle, _)| {
            format!("{idle} KiB")
        }));
        out.push_str(&row("idle server, resident".to_owned(), &|server, _| {
            format!("{server} KiB")
        }));
        out.push_str(&row(
            format!("per call in flight ({} parked)", options.park),
            &|_, (_, bytes)| format!("{bytes} bytes"),
        ));
        out
    }

    /// Peer `a` against `b`: both peers' medians, and the ratios a/b.
    fn pair_table(&self, a_peer: Peer, b_peer: Peer) -> String {
        let (a, b) = (self.letter(a_peer), self.letter(b_peer));
        let mut out = format!(
            "| method | in flight | calls/s {a} | calls/s {b} | {a}/{b} | p50 {a} (us) | p50 {b} (us) | \
             {a}/{b} | p99 {a} (us) | p99 {b} (us) | client CPU/call {a} (us) | {b} | server \
             CPU/call {a} (us) | {b} | client+server CPU {a}/{b} | broker CPU/call {a} (us) | {b} | \
             switches/call {a} | {b} |\n"
        );
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let options = &self.options;
        let pair = (a_peer, b_peer);
        for &method in &options.methods {
            for &in_flight in &options.in_flight {
                let (Some(a), Some(b)) = (
                    self.medians(method, in_flight, a_peer),
                    self.medians(method, in_flight, b_peer),
                ) else {
                    continue;
                };
                let throughput = self.ratio(pair, method, in_flight, |point| point.calls_per_s);
                let p50 = self.ratio(pair, method, in_flight, |point| point.p50_us);
                let cpu = self.ratio(pair, method, in_flight, |point| {
                    point.client_cpu_us + point.server_cpu_us
                });
                out.push_str(&format!(
                    "| {} | {in_flight} | {:.0} | {:.0} | {throughput} | {:.0} | {:.0} | {p50} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {cpu} | {} | {} | {:.1} | {:.1} |\n",
                    method.name(),
                    a.calls_per_s,
                    b.calls_per_s,
                    a.p50_us,
                    b.p50_us,
                    a.p99_us,
                    b.p99_us,
                    a.client_cpu_us,
                    b.client_cpu_us,
                    a.server_cpu_us,
                    b.server_cpu_us,
                    a.broker(),
                    b.broker(),
                    a.client_switches + a.server_switches,
                    b.client_switches + b.server_switches,
                ));
            }
        }
        out
    }

    /// One peer's medians.
    fn single_table(&self, peer: Peer) -> String {
        let mut out =
            "| method | in flight | calls/s | p50 (us) | p99 (us) | client CPU/call (us) | \
                       server CPU/call (us) | broker CPU/call (us) | switches/call |\n\
                       |---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
                .to_owned();
        for &method in &self.options.methods {
            for &in_flight in &self.options.in_flight {
                let Some(m) = self.medians(method, in_flight, peer) else {
                    continue;
                };
                out.push_str(&format!(
                    "| {} | {in_flight} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {} | {:.1} |\n",
                    method.name(),
                    m.calls_per_s,
                    m.p50_us,
                    m.p99_us,
                    m.client_cpu_us,
                    m.server_cpu_us,
                    m.broker(),
                    m.client_switches + m.server_switches,
                ));
            }
        }
        out
    }

    /// Writes the Markdown and the chart.
    pub(crate) fn write(
        &self,
        markdown_path: &str,
        markdown: &str,
        chart_path: &str,
    ) -> Result<(), crate::Error> {
        for path in [markdown_path, chart_path] {
            if let Some(parent) = std::path::Path::new(path).parent() {
                std::fs::create_dir_all(parent)?;
            }
        }
        std::fs::write(markdown_path, markdown)?;
        self.chart(chart_path)
    }

    /// Calls/s against calls in flight, for each method and peer.
    fn chart(&self, path: &str) -> Result<(), crate::Error> {
        let options = &self.options;
        let mut series = Vec::new();
        let mut top = 0f64;
        for &method in &options.methods {
            for &peer in &options.peers {
                let line: Vec<(u32, f64)> = options
                    .in_flight
                    .iter()
                    .filter_map(|&n| {
                        self.medians(method, n, peer)
                            .map(|m| (n as u32, m.calls_per_s))
                    })
                    .collect();
                top = line.iter().fold(top, |top, &(_, y)| top.max(y));
                series.push((method, peer, line));
            }
        }
        let lowest = options.in_flight.iter().copied().min().unwrap_or(1).max(1) as u32;
        let highest = options.in_flight.iter().copied().max().unwrap_or(1).max(2) as u32;
        let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "Calls/s against calls in flight ({})",
                    options
                        .peers
                        .iter()
                        .map(|&peer| format!("{}: {}", self.letter(peer), peer.label()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                ("sans-serif", 22),
            )
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d((lowest..highest).log_scale(), 0f64..top * 1.15)?;
        chart
            .configure_mesh()
            .x_desc("calls in flight (log scale)")
            .y_desc("calls/s (median)")
            .draw()?;
        // One colour per peer (four peers at most), whatever the method, so
        // that a peer reads the same in both methods' lines.
        let colors = [BLUE, RED, RGBColor(0, 140, 0), MAGENTA, CYAN, BLACK];
        let baseline = options.baseline();
        for (method, peer, line) in series {
            let index = options
                .peers
                .iter()
                .position(|&listed| listed == peer)
                .unwrap_or(0);
            let color = colors[index % colors.len()];
            // The first peer bold, the baseline thin, any other between.
            let style = if index == 0 {
                color.stroke_width(3)
            } else if peer == baseline {
                color.stroke_width(1)
            } else {
                color.stroke_width(2)
            };
            let label = format!("{} {} {}", self.letter(peer), peer.label(), method.name());
            // The first method solid with circles, any other dashed with
            // triangles.
            if Some(&method) == options.methods.first() {
                chart
                    .draw_series(LineSeries::new(line.clone(), style))?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
                chart.draw_series(
                    line.into_iter()
                        .map(|point| Circle::new(point, 4, color.filled())),
                )?;
            } else {
                chart
                    .draw_series(DashedLineSeries::new(line.clone(), 8, 5, style))?
                    .label(label)
                    .legend(move |(x, y)| {
                        DashedPathElement::new(vec![(x, y), (x + 20, y)], 8, 5, style)
                    });
                chart.draw_series(
                    line.into_iter()
                        .map(|point| TriangleMarker::new(point, 5, color.filled())),
                )?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    }
}
