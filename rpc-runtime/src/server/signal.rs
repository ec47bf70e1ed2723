//! Shutting every server down when the process is asked to stop.

use super::ServerHandle;
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{info, warn};

/// Waits until the process is asked to stop, by Ctrl-C (SIGINT) or, on Unix,
/// SIGTERM (what `kill`, systemd, Docker and Kubernetes send), then shuts
/// every server down gracefully, together (see [`ServerHandle::shutdown`]):
/// each stops taking requests, hands back those it has not started, and
/// finishes those in flight within its grace.
///
/// A second signal while they finish stops them at once: the requests still
/// running are abandoned to the broker, which redelivers them when the
/// connection closes (as it does when the process exits). Fails only if the
/// signal handlers cannot be installed, which it does on its first poll,
/// before it waits.
///
/// ```no_run
/// # use rpc_runtime::rpc_service;
/// # #[rpc_service]
/// # pub trait Echo { async fn echo(&self, text: String) -> String; }
/// # struct Parrot;
/// # impl Echo for Parrot { async fn echo(&self, text: String) -> String { text } }
/// # async fn demo() -> anyhow::Result<()> {
/// use rpc_runtime::{Connection, Server};
/// let connection = Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
/// let echo = Server::serve(&connection, EchoServer::new(Parrot)).await?;
/// let shout = Server::builder()
///     .queue("shout")
///     .serve(&connection, EchoServer::new(Parrot))
///     .await?;
/// rpc_runtime::shutdown_on_signal([echo, shout]).await?;
/// connection.close().await;
/// # Ok(()) }
/// ```
pub async fn shutdown_on_signal(
    servers: impl IntoIterator<Item = ServerHandle>,
) -> std::io::Result<()> {
    let mut signals = Signals::install()?;
    let servers: Vec<ServerHandle> = servers.into_iter().collect();
    let signal = signals.next().await;
    info!(
        signal,
        servers = servers.len(),
        "shutting down gracefully (send the signal again to stop at once)"
    );
    let tasks: Vec<AbortHandle> = servers
        .iter()
        .filter_map(|server| server.task.as_ref().map(JoinHandle::abort_handle))
        .collect();
    let all_shut_down =
        futures_util::future::join_all(servers.into_iter().map(ServerHandle::shutdown));
    tokio::select! {
        _ = all_shut_down => {}
        signal = signals.next() => {
            warn!(
                signal,
                "stopping at once: the requests still running go back to the broker when the \
                 connection closes"
            );
            for task in tasks {
                task.abort();
            }
        }
    }
    Ok(())
}

/// The signals that ask a process to stop.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers at once, so that a signal that comes before
    /// anyone waits for it is not lost (nor kills the process).
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Waits for the next signal; returns its name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            }
        }
    }
}
