//! Helpers for the integration tests, one module per concern:
//!
//! - [`broker`]: the broker the tests share: its URL ([`amqp_url`]),
//!   connections to it ([`connect`], [`connection_builder`]), names no other
//!   test uses ([`unique`]), queues that delete themselves ([`TestQueue`]),
//!   and a local port that is not the broker ([`local_listener`]).
//! - [`fixture`]: the set-up most tests open with, in one step: a queue, a
//!   connection, a `Lab` server and a client ([`LabFixture`]).
//! - [`guards`]: guards against hanging forever ([`within`], [`PATIENCE`]).
//! - [`lab`]: the test service `Lab` ([`LabImpl`], steered through a
//!   [`LabControl`]; the [`Shape`] and [`Point`] it sends across) and its
//!   set-up step by step ([`lab_server`], [`serve_lab`], [`lab_client`]),
//!   for tests that [`LabFixture`] does not fit.
//! - [`logs`]: capturing what is logged ([`Captured`]).
//! - [`rabbitmqctl`]: the broker's CLI, to find and close connections
//!   ([`connections_named`], [`close_connections_named`], [`CLI_PATIENCE`]).
//! - [`process`]: a `Lab` server in a child process ([`LabServerProcess`]).
//! - [`streams`]: calls that keep coming while a test breaks something
//!   ([`CallStream`], [`Tally`]).
//! - [`raw`]: raw AMQP, as a client in another language would use it.
//! - [`python`]: the clients in Python, run against the tests' servers.
//! - [`relay`]: a TCP relay that can cut or hold connections to the broker.
//! - [`private_broker`]: a RabbitMQ node of a test's own, for destructive
//!   tests.
//! - [`cluster`]: a private cluster of such nodes, for tests where any node
//!   may die ([`Cluster`]).
//! - [`fuzzing`]: the bodies of the fuzz targets.
//!
//! What tests use most is re-exported here.
//!
//! Tests never stop, reset or reconfigure the broker they are given: they
//! declare uniquely named queues and delete them when done.

pub mod broker;
pub mod cluster;
pub mod fixture;
pub mod fuzzing;
pub mod guards;
pub mod lab;
pub mod logs;
pub mod private_broker;
pub mod process;
pub mod python;
pub mod rabbitmqctl;
pub mod raw;
pub mod relay;
pub mod streams;

pub use broker::{TestQueue, amqp_url, connect, connection_builder, local_listener, unique};
pub use cluster::Cluster;
pub use fixture::{LabFixture, LabFixtureBuilder};
pub use guards::{PATIENCE, within};
pub use lab::{
    Caller, ContextReport, Lab, LabClient, LabControl, LabError, LabImpl, LabServer, Point, Shape,
    lab_client, lab_server, serve_lab,
};
pub use logs::Captured;
pub use process::LabServerProcess;
pub use rabbitmqctl::{CLI_PATIENCE, close_connections_named, connections_named};
pub use streams::{CallStream, Tally};
