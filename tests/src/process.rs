//! A `Lab` server in a process of its own (`src/bin/lab_server.rs`), for
//! tests that kill a server or measure a client alone.

use crate::guards::{PATIENCE, within};

/// A `lab_server` process (see `src/bin/lab_server.rs`), killed when dropped.
#[derive(Debug)]
pub struct LabServerProcess {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl LabServerProcess {
    /// Starts `binary` (pass `env!("CARGO_BIN_EXE_lab_server")`) and waits
    /// until it consumes `queue`.
    pub async fn start(binary: &str, url: &str, queue: &str, name: &str, prefetch: u16) -> Self {
        Self::start_with(binary, url, queue, name, &[&prefetch.to_string()]).await
    }

    /// [`start`](Self::start) with `lab_server`'s other options: `PREFETCH`,
    /// `--quorum`, `--delivery-limit N`, `--dead-letter-queue QUEUE`.
    pub async fn start_with(
        binary: &str,
        url: &str,
        queue: &str,
        name: &str,
        options: &[&str],
    ) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(binary)
            .args([url, queue, name])
            .args(options)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn lab_server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut process = Self {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
        };
        assert_eq!(process.next_line().await, "serving");
        process
    }

    async fn next_line(&mut self) -> String {
        within(PATIENCE, "a line from lab_server", self.lines.next_line())
            .await
            .expect("read lab_server's output")
            .expect("lab_server exited")
    }

    /// Waits until a `hold` call starts in the process; returns its tag.
    pub async fn next_started(&mut self) -> u32 {
        let line = self.next_line().await;
        line.strip_prefix("started ")
            .and_then(|tag| tag.parse().ok())
            .unwrap_or_else(|| panic!("unexpected lab_server output: {line}"))
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill lab_server");
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}
