//! A private RabbitMQ node for destructive tests: its own node name, AMQP and
//! distribution ports, cookie, data and log directories under a temporary
//! directory, so that stopping, killing or restarting it touches nothing
//! else. It is stopped (killed) when dropped, panics included.
//!
//! It runs `/usr/lib/rabbitmq/bin/rabbitmq-server` and `rabbitmqctl`
//! directly: the `/usr/sbin` wrappers of Debian's package switch to the
//! `rabbitmq` user and its cookie. `HOME` points at the private cookie.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

/// TLS files for a node with an `amqps` listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca_certificate: PathBuf,
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// A private RabbitMQ node.
#[derive(Debug)]
pub struct PrivateBroker {
    dir: PathBuf,
    node: String,
    amqp_port: u16,
    dist_port: u16,
    tls_port: Option<u16>,
    server: Option<Child>,
}

/// A free TCP port on 127.0.0.1 (free when this returns).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free local port")
        .port()
}

impl PrivateBroker {
    /// Whether this machine can run a private node.
    pub fn available() -> bool {
        Path::new(SERVER).exists() && Path::new(CTL).exists()
    }

    /// Starts a private node and waits until it accepts connections.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts a private node with an `amqps` listener using `tls`.
    pub async fn start_with_tls(tls: &TlsFiles) -> Self {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<&TlsFiles>) -> Self {
        assert!(
            Self::available(),
            "{SERVER} is missing: install the rabbitmq-server Debian package"
        );
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("rpc-tests-broker-{id}"));
        for sub in ["home", "mnesia", "log"] {
            std::fs::create_dir_all(dir.join(sub)).expect("create the broker's directories");
        }
        let cookie = dir.join("home/.erlang.cookie");
        std::fs::write(&cookie, format!("rpctests{id}")).expect("write the cookie");
        set_mode(&cookie, 0o400);
        std::fs::write(dir.join("enabled_plugins"), "").expect("write enabled_plugins");
        std::fs::write(dir.join("env.conf"), "").expect("write env.conf");
        let tls_port = tls.map(|_| free_port());
        let mut config = String::new();
        if let (Some(tls), Some(port)) = (tls, tls_port) {
            config.push_str(&format!(
                "listeners.ssl.default = 127.0.0.1:{port}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_none\n\
                 ssl_options.fail_if_no_peer_cert = false\n",
                tls.ca_certificate.display(),
                tls.certificate.display(),
                tls.key.display()
            ));
        }
        std::fs::write(dir.join("rabbitmq.conf"), config).expect("write rabbitmq.conf");
        let mut broker = Self {
            node: format!("rpctests-{}@localhost", &id[..12]),
            amqp_port: free_port(),
            dist_port: free_port(),
            tls_port,
            dir,
            server: None,
        };
        broker.boot().await;
        broker
    }

    /// The node's environment: everything private.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        let dir = &self.dir;
        command
            .env("HOME", dir.join("home"))
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", self.pid_file())
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("env.conf"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1");
        command
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("rabbitmq.pid")
    }

    /// Starts the node (again) and waits until its applications run.
    async fn boot(&mut self) {
        let _ = std::fs::remove_file(self.pid_file());
        let log = std::fs::File::create(self.dir.join("log/server.out")).expect("server log");
        let server = self
            .command(SERVER)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn rabbitmq-server");
        self.server = Some(server);
        let pid_file = self.pid_file();
        let pid_file = pid_file.to_string_lossy();
        let waited = self.ctl(&["wait", "--timeout", "60", &pid_file]).await;
        if let Err(error) = waited {
            let log = std::fs::read_to_string(self.dir.join("log/server.out")).unwrap_or_default();
            panic!("the private broker did not start: {error}\n{log}");
        }
    }

    /// Runs `rabbitmqctl -n NODE args...`.
    pub async fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let mut command = tokio::process::Command::from(self.command(CTL));
        let output = command
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .output()
            .await
            .map_err(|error| format!("cannot run {CTL}: {error}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "rabbitmqctl {args:?} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    /// `amqps://guest:guest@localhost:PORT/%2f`, for a node started with TLS.
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("started with TLS");
        format!("amqps://guest:guest@localhost:{port}/%2f")
    }

    /// Stops the node gracefully (connections get a close from the broker).
    pub async fn stop(&mut self) {
        let pid_file = self.pid_file();
        self.ctl(&["stop", &pid_file.to_string_lossy()])
            .await
            .expect("rabbitmqctl stop");
        self.reap();
    }

    /// Kills the node with SIGKILL: connections just break.
    pub fn kill(&mut self) {
        if let Some(pid) = self.beam_pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        self.reap();
    }

    /// Starts the node again, with its data (durable queues survive).
    pub async fn restart(&mut self) {
        self.boot().await;
    }

    /// Closes every client connection from the broker's side.
    pub async fn close_all_connections(&self) -> String {
        self.ctl(&["close_all_connections", "closed by an rpc-tests test"])
            .await
            .expect("rabbitmqctl close_all_connections")
    }

    /// The pid of the Erlang VM, which the server script leaves as a child.
    fn beam_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Waits for the server script to exit, killing it if it lingers, and
    /// forgets the VM's pid so that it is never signalled once reused.
    fn reap(&mut self) {
        if let Some(mut server) = self.server.take() {
            let exited = (0..100).any(|_| {
                let exited = matches!(server.try_wait(), Ok(Some(_)));
                if !exited {
                    std::thread::sleep(Duration::from_millis(50));
                }
                exited
            });
            if !exited {
                let _ = server.kill();
                let _ = server.wait();
            }
        }
        let _ = std::fs::remove_file(self.pid_file());
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
