//! The broker's CLI, `rabbitmqctl`, for what AMQP cannot do: listing the
//! broker's connections and closing one of them. It only ever touches the
//! connections a test names.

use std::time::Duration;

/// Guard around operations that run `rabbitmqctl` (a hang guard too): the
/// Erlang CLI alone takes seconds to start on a loaded machine (one
/// `close_all_connections` took 19 s with both cores busy), so a guard that
/// includes it is sized for the CLI, not for what the framework does.
pub const CLI_PATIENCE: Duration = Duration::from_secs(180);

/// Closes, from the broker's side, every connection named `name`, with
/// `rabbitmqctl close_connection` (which only touches that connection).
/// Returns how many it closed.
pub async fn close_connections_named(name: &str) -> usize {
    let pids = connections_named(name).await;
    for pid in &pids {
        rabbitmqctl(&["-q", "close_connection", pid, "closed by an rpc-tests test"]).await;
    }
    pids.len()
}

/// The broker's ids (pids) of the connections named `name`.
pub async fn connections_named(name: &str) -> Vec<String> {
    let listed = rabbitmqctl(&["-q", "list_connections", "pid", "client_properties"]).await;
    let needle = format!("{{\"connection_name\",\"{name}\"}}");
    listed
        .lines()
        .filter(|line| line.contains(&needle))
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

async fn rabbitmqctl(args: &[&str]) -> String {
    let output = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .await
        .unwrap_or_else(|error| {
            panic!("cannot run rabbitmqctl ({error}): these tests need the broker's CLI on PATH")
        });
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
