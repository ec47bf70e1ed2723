//! What a server tells about its requests: a `tracing` span per request, and
//! metrics through the `metrics` facade (the application installs a
//! recorder and picks the exporter; without one, the handles below are
//! no-ops, registered once per server).
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `rpc_server_requests_total` | counter | `service`, `method`, `outcome`: `ok`, `error` (the method's own), `fault`, `refused` (its `reply_to`), `skipped` (past its deadline) |
//! | `rpc_server_handler_duration_seconds` | histogram | `service`, `method` |
//! | `rpc_server_requests_in_flight` | gauge | `service` |
//! | `rpc_server_faults_total` | counter | `service`, `kind` |
//! | `rpc_server_redeliveries_total` | counter | `service`, `method` |
//! | `rpc_server_deadline_skipped_total` | counter | `service`, `method` |
//!
//! `method` is one of the service's methods, or `unknown`: a label never
//! takes a value a request chose, so hostile input cannot grow the series.

use crate::protocol::fault::FaultKind;
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use std::{collections::HashMap, time::Duration};

/// How a request ended, for the metrics and its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    /// The method returned its own error.
    Error,
    Fault,
    /// Its `reply_to` is not allowed: rejected without a reply.
    Refused,
    /// Its deadline had passed before it could start.
    Skipped,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Fault => "fault",
            Outcome::Refused => "refused",
            Outcome::Skipped => "skipped",
        }
    }

    const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Fault,
        Outcome::Refused,
        Outcome::Skipped,
    ];
}

/// The fault kinds a server counts by name; others count as `other`.
const FAULT_KINDS: [FaultKind; 8] = [
    FaultKind::UnknownMethod,
    FaultKind::BadRequest,
    FaultKind::HandlerPanicked,
    FaultKind::UnsupportedContentType,
    FaultKind::RequestTooLarge,
    FaultKind::Internal,
    FaultKind::Unauthenticated,
    FaultKind::PermissionDenied,
];

/// One method's metrics.
pub(crate) struct MethodMetrics {
    outcomes: [Counter; Outcome::ALL.len()],
    handler: Histogram,
    redeliveries: Counter,
    skipped: Counter,
}

impl MethodMetrics {
    fn register(service: &'static str, name: &'static str) -> Self {
        let outcome = |outcome: Outcome| counter!("rpc_server_requests_total", "service" => service, "method" => name, "outcome" => outcome.as_str());
        Self {
            outcomes: Outcome::ALL.map(outcome),
            handler: histogram!("rpc_server_handler_duration_seconds", "service" => service, "method" => name),
            redeliveries: counter!("rpc_server_redeliveries_total", "service" => service, "method" => name),
            skipped: counter!("rpc_server_deadline_skipped_total", "service" => service, "method" => name),
        }
    }

    /// Counts a request that ended with `outcome`.
    pub(crate) fn ended(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].increment(1);
        if outcome == Outcome::Skipped {
            self.skipped.increment(1);
        }
    }

    /// Records how long the method ran.
    pub(crate) fn ran_for(&self, duration: Duration) {
        self.handler.record(duration.as_secs_f64());
    }

    /// Counts a redelivered request.
    pub(crate) fn redelivered(&self) {
        self.redeliveries.increment(1);
    }
}

/// A server's metrics, registered when it starts.
pub(crate) struct ServerMetrics {
    methods: HashMap<&'static str, MethodMetrics>,
    unknown: MethodMetrics,
    faults: Vec<(FaultKind, Counter)>,
    other_fault: Counter,
    pub(crate) in_flight: Gauge,
}

impl ServerMetrics {
    pub(crate) fn register(service: &'static str, methods: &[&'static str]) -> Self {
        Self {
            methods: methods
                .iter()
                .map(|&name| (name, MethodMetrics::register(service, name)))
                .collect(),
            unknown: MethodMetrics::register(service, "unknown"),
            faults: FAULT_KINDS
                .iter()
                .map(|kind| {
                    let counter = counter!("rpc_server_faults_total", "service" => service, "kind" => kind.as_str().to_owned());
                    (kind.clone(), counter)
                })
                .collect(),
            other_fault: counter!("rpc_server_faults_total", "service" => service, "kind" => "other"),
            in_flight: gauge!("rpc_server_requests_in_flight", "service" => service),
        }
    }

    /// The metrics of the method a request names (`unknown` for a name the
    /// service does not have, or none).
    pub(crate) fn method(&self, name: Option<&str>) -> &MethodMetrics {
        name.and_then(|name| self.methods.get(name))
            .unwrap_or(&self.unknown)
    }

    /// Counts a fault of `kind`.
    pub(crate) fn fault(&self, kind: &FaultKind) {
        match self.faults.iter().find(|(known, _)| known == kind) {
            Some((_, counter)) => counter.increment(1),
            None => self.other_fault.increment(1),
        }
    }
}
