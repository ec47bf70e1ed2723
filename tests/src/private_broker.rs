//! A private RabbitMQ node for destructive tests: its own node name, AMQP and
//! distribution ports, cookie, data and log directories under a temporary
//! directory, so that stopping, killing or restarting it touches nothing
//! else. It is stopped (killed) when dropped, panics included.
//!
//! It runs `/usr/lib/rabbitmq/bin/rabbitmq-server` and `rabbitmqctl`
//! directly: the `/usr/sbin` wrappers of Debian's package switch to the
//! `rabbitmq` user and its cookie. `HOME` points at the private cookie.
//!
//! `rabbitmqctl` is an Erlang VM of its own: on a loaded machine it takes
//! seconds to start. Tests that time what the framework does after the node
//! fails or comes back therefore never measure from when a `rabbitmqctl`
//! command was started or returned, but from what the node did, as seen
//! from outside by a [`ConnectionProbe`] (the node closed its connections,
//! or its VM died) and by [`PrivateBroker::restart`] (the node accepted a
//! connection again).

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";
/// How long `rabbitmqctl wait` waits for a node to boot: a hang guard, long
/// enough for a node booting on a machine whose cores are all busy.
const BOOT_TIMEOUT_S: &str = "180";
/// How long a probe's AMQP handshake may take: a hang guard.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`first_accepted`] tries to connect while a node boots: the
/// resolution of the instant it reports.
const ACCEPT_POLL: Duration = Duration::from_millis(10);

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
    /// `HOME`: where the Erlang cookie is (shared by a cluster's nodes).
    home: PathBuf,
    server: Option<Child>,
    /// Whether the node is frozen (see [`PrivateBroker::freeze`]).
    frozen: std::sync::atomic::AtomicBool,
}

/// How [`PrivateBroker::create`] sets a node up.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeOptions {
    /// An `amqps` listener with these files.
    pub(crate) tls: Option<TlsFiles>,
    /// A `HOME` holding the cookie to use (a cluster's, shared); by
    /// default, one of the node's own.
    pub(crate) home: Option<PathBuf>,
    /// The start of the node's name (`PREFIX-ID@localhost`).
    pub(crate) name: Option<String>,
    /// Lines for `rabbitmq.conf`.
    pub(crate) config: String,
}

/// Writes the Erlang cookie `value` into `home/.erlang.cookie` (mode 400,
/// as Erlang requires).
pub(crate) fn write_cookie(home: &Path, value: &str) {
    std::fs::create_dir_all(home).expect("create the cookie's directory");
    let cookie = home.join(".erlang.cookie");
    std::fs::write(&cookie, value).expect("write the cookie");
    set_mode(&cookie, 0o400);
}

/// The distribution ports RabbitMQ's CLI tools listen on themselves
/// (`RABBITMQ_CTL_DIST_PORT_MIN`, 35672 by default, to `_MAX`, ten more),
/// whatever node they speak to. A node given one of them can lose it to the
/// `rabbitmqctl wait` started beside it, and fails to boot: "could not bind
/// to distribution port 35673, it is in use by another node:
/// rabbitmqcli-637-rpctests-…" (seen in CI). A margin is kept.
const CLI_DIST_PORTS: std::ops::RangeInclusive<u16> = 35_662..=35_692;

/// Where private nodes' ports are drawn from: below the kernel's ephemeral
/// range (`net.ipv4.ip_local_port_range`, 32768 to 60999 by default), where
/// nothing that binds port 0 is given one. A port drawn there, free when
/// checked, can be taken before the node binds it by any process handed an
/// ephemeral port: the transient `epmd-starter-…` node that
/// `rabbitmq-server` starts while another private node boots did take one,
/// and the node failed to boot ("could not bind to distribution port 40483,
/// it is in use by another node: epmd-starter-280023752@localhost", seen in
/// a run of the suite).
fn port_range() -> std::ops::Range<u16> {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    10_000..ephemeral_start.max(20_000)
}

/// The ports this process has handed out: never twice (the tests of one
/// binary boot their nodes side by side).
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// A free TCP port on 127.0.0.1 (free when this returns), from
/// [`port_range`], from a random place in it (other test processes draw
/// too), never one the CLI tools take ([`CLI_DIST_PORTS`]) nor one handed
/// out before.
fn free_port() -> u16 {
    let range = port_range();
    let span = u32::from(range.end - range.start);
    let start = (uuid::Uuid::new_v4().as_u128() % u128::from(span)) as u32;
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    (0..span)
        .map(|i| range.start + ((start + i) % span) as u16)
        .find(|port| {
            !CLI_DIST_PORTS.contains(port)
                && !handed_out.contains(port)
                && TcpListener::bind(("127.0.0.1", *port)).is_ok()
        })
        .inspect(|port| {
            handed_out.insert(*port);
        })
        .unwrap_or_else(|| panic!("no free port from {} to {}", range.start, range.end))
}

impl PrivateBroker {
    /// Whether this machine can run a private node.
    pub fn available() -> bool {
        Path::new(SERVER).exists() && Path::new(CTL).exists()
    }

    /// Starts a private node and waits until it accepts connections.
    pub async fn start() -> Self {
        let mut broker = Self::create(&NodeOptions::default());
        broker.boot().await;
        broker
    }

    /// Starts a private node with an `amqps` listener using `tls`.
    pub async fn start_with_tls(tls: &TlsFiles) -> Self {
        let mut broker = Self::create(&NodeOptions {
            tls: Some(tls.clone()),
            ..NodeOptions::default()
        });
        broker.boot().await;
        broker
    }

    /// Prepares a node's directories, cookie and configuration, without
    /// starting it (see [`boot`](Self::boot)).
    pub(crate) fn create(options: &NodeOptions) -> Self {
        assert!(
            Self::available(),
            "{SERVER} is missing: install the rabbitmq-server Debian package"
        );
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("rpc-tests-broker-{id}"));
        for sub in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.join(sub)).expect("create the broker's directories");
        }
        let home = match &options.home {
            Some(home) => home.clone(),
            None => {
                let home = dir.join("home");
                write_cookie(&home, &format!("rpctests{id}"));
                home
            }
        };
        std::fs::write(dir.join("enabled_plugins"), "").expect("write enabled_plugins");
        std::fs::write(dir.join("env.conf"), "").expect("write env.conf");
        let tls_port = options.tls.as_ref().map(|_| free_port());
        let mut config = options.config.clone();
        if let (Some(tls), Some(port)) = (&options.tls, tls_port) {
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
        let prefix = options.name.as_deref().unwrap_or("rpctests");
        Self {
            node: format!("{prefix}-{}@localhost", &id[..12]),
            amqp_port: free_port(),
            dist_port: free_port(),
            tls_port,
            home,
            dir,
            server: None,
            frozen: Default::default(),
        }
    }

    /// The node's environment: everything private.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        let dir = &self.dir;
        command
            .env("HOME", &self.home)
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
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            // A node that fails to boot writes its crash dump here, not into
            // the test's working directory (the repository).
            .env("ERL_CRASH_DUMP", dir.join("erl_crash.dump"));
        command
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("rabbitmq.pid")
    }

    /// Starts the node (again) and waits until its applications run;
    /// returns when it first accepted an AMQP connection.
    pub(crate) async fn boot(&mut self) -> Instant {
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
        // Watched from the start: `rabbitmqctl wait` returns seconds after
        // the node is up on a loaded machine.
        let accepted = tokio::spawn(first_accepted(self.amqp_port));
        let pid_file = self.pid_file();
        let pid_file = pid_file.to_string_lossy();
        let waited = self
            .ctl(&["wait", "--timeout", BOOT_TIMEOUT_S, &pid_file])
            .await;
        if let Err(error) = waited {
            accepted.abort();
            let log = std::fs::read_to_string(self.dir.join("log/server.out")).unwrap_or_default();
            panic!("the private broker did not start: {error}\n{log}");
        }
        crate::guards::within(
            crate::guards::PATIENCE,
            "the started node to accept an AMQP connection",
            accepted,
        )
        .await
        .expect("the accepting probe")
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

    /// `amqp://USER:PASSWORD@127.0.0.1:PORT/%2f`, for a user of this node.
    pub fn url_for(&self, user: &str, password: &str) -> String {
        format!("amqp://{user}:{password}@127.0.0.1:{}/%2f", self.amqp_port)
    }

    /// Adds a user with every permission on `/` and the given tags.
    pub async fn add_user(&self, user: &str, password: &str, tags: &[&str]) {
        self.ctl(&["add_user", user, password])
            .await
            .expect("add_user");
        self.ctl(&["set_permissions", "-p", "/", user, ".*", ".*", ".*"])
            .await
            .expect("set_permissions");
        let mut args = vec!["set_user_tags", user];
        args.extend_from_slice(tags);
        self.ctl(&args).await.expect("set_user_tags");
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

    /// Freezes the node's VM (SIGSTOP): it answers nothing, closes nothing,
    /// until [`thaw`](Self::thaw), as a node whose machine stalls or whose
    /// network drops every packet.
    pub fn freeze(&self) {
        self.signal("-STOP");
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Resumes a node frozen by [`freeze`](Self::freeze) (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
        self.frozen
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the node runs and is not frozen: it answers `rabbitmqctl`.
    pub fn is_up(&self) -> bool {
        self.server.is_some() && !self.frozen.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn signal(&self, signal: &str) {
        if let Some(pid) = self.beam_pid() {
            let status = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
            assert!(
                status.is_ok_and(|status| status.success()),
                "kill {signal} {pid}"
            );
        }
    }

    /// The node's Erlang name (`PREFIX-ID@localhost`).
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// Starts the node again, with its data (durable queues survive), and
    /// waits until it runs. Returns when the node was back: when its AMQP
    /// port first accepted the TCP connection of an AMQP handshake that then
    /// succeeded (tried every 10 ms while it boots), not when `rabbitmqctl
    /// wait` noticed.
    pub async fn restart(&mut self) -> Instant {
        self.boot().await
    }

    /// Opens a [`ConnectionProbe`] to the node.
    pub async fn probe(&self) -> ConnectionProbe {
        ConnectionProbe::open(self.amqp_port).await
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

/// An AMQP 0-9-1 connection of the test's own to a node, opened by hand (no
/// client library: it observes the broker, and nothing of the framework
/// under test), that records when it ends: when the broker closes it
/// (`connection.close`, as on `rabbitmqctl stop` or
/// `close_all_connections`) or it breaks (the node's VM died). That is when
/// the node went away for its clients. Heartbeats are off, so nothing else
/// ever arrives on it.
#[derive(Debug)]
pub struct ConnectionProbe {
    socket: TcpStream,
    ended: tokio::sync::oneshot::Receiver<ProbeEnd>,
}

/// How and when a [`ConnectionProbe`] ended.
#[derive(Debug, Clone)]
pub struct ProbeEnd {
    /// When the probe's blocked read returned.
    pub at: Instant,
    /// What it read: the broker's `connection.close`, an end of stream, or
    /// an error.
    pub how: String,
}

impl ConnectionProbe {
    async fn open(port: u16) -> Self {
        let (socket, _) = tokio::task::spawn_blocking(move || handshake(port))
            .await
            .expect("the probe's handshake task")
            .unwrap_or_else(|error| panic!("a probe connection to port {port}: {error}"));
        let mut reader = socket.try_clone().expect("clone the probe's socket");
        let (report, ended) = tokio::sync::oneshot::channel();
        // A thread of its own, blocked in `read`: woken by the kernel when
        // the broker writes or the socket ends, whatever the test's runtime
        // is busy with.
        std::thread::spawn(move || {
            let mut buffer = [0u8; 512];
            let read = reader.read(&mut buffer);
            let at = Instant::now();
            let how = match read {
                Ok(0) => "end of stream".to_owned(),
                Ok(read) => describe_close(&buffer[..read]),
                Err(error) => format!("error: {error}"),
            };
            let _ = report.send(ProbeEnd { at, how });
        });
        Self { socket, ended }
    }

    /// Waits (up to [`crate::guards::PATIENCE`]) until the probe ends.
    pub async fn ended(mut self) -> ProbeEnd {
        crate::guards::within(
            crate::guards::PATIENCE,
            "the probe connection to end",
            &mut self.ended,
        )
        .await
        .expect("the probe's reader reports")
    }
}

impl Drop for ConnectionProbe {
    fn drop(&mut self) {
        // Wakes the reader thread, which then exits.
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

/// The first frame a probe received, described.
fn describe_close(bytes: &[u8]) -> String {
    // Frame: type 1 (method), channel (2), size (4); then class 10, method
    // 50 (connection.close), reply code (2), reply text (short string).
    if bytes.len() >= 14 && bytes[0] == 1 && bytes[7..11] == [0, 10, 0, 50] {
        let code = u16::from_be_bytes([bytes[11], bytes[12]]);
        let text = bytes
            .get(14..14 + usize::from(bytes[13]))
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        format!("connection.close {code} {text}")
    } else {
        format!("{} unexpected bytes", bytes.len())
    }
}

/// Tries AMQP handshakes with the node on `port` every [`ACCEPT_POLL`]
/// until one succeeds; returns when that one's TCP connection was accepted.
async fn first_accepted(port: u16) -> Instant {
    loop {
        if let Ok(Ok((mut socket, accepted_at))) =
            tokio::task::spawn_blocking(move || handshake(port)).await
        {
            // connection.close, 200: without waiting for its close-ok.
            let _ = send_method(&mut socket, 10, 50, &[0, 200, 0, 0, 0, 0, 0]);
            let _ = socket.shutdown(Shutdown::Both);
            return accepted_at;
        }
        tokio::time::sleep(ACCEPT_POLL).await;
    }
}

/// An AMQP 0-9-1 handshake as guest, heartbeats off, on vhost `/`. Returns
/// the open connection and when its TCP connection was accepted.
fn handshake(port: u16) -> std::io::Result<(TcpStream, Instant)> {
    let mut socket = TcpStream::connect(("127.0.0.1", port))?;
    let accepted_at = Instant::now();
    socket.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    socket.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    socket.set_nodelay(true)?;
    socket.write_all(b"AMQP\x00\x00\x09\x01")?;
    expect_method(&mut socket, 10, 10)?; // connection.start
    let mut start_ok = Vec::new();
    start_ok.extend(0u32.to_be_bytes()); // client properties: none
    short_string(&mut start_ok, "PLAIN");
    let response = b"\0guest\0guest";
    start_ok.extend(u32::try_from(response.len()).expect("short").to_be_bytes());
    start_ok.extend(response);
    short_string(&mut start_ok, "en_US");
    send_method(&mut socket, 10, 11, &start_ok)?;
    let tune = expect_method(&mut socket, 10, 30)?;
    let limits = tune
        .get(..6)
        .ok_or_else(|| protocol_error("a short connection.tune"))?;
    let mut tune_ok = limits.to_vec(); // channel-max and frame-max as offered
    tune_ok.extend(0u16.to_be_bytes()); // no heartbeats
    send_method(&mut socket, 10, 31, &tune_ok)?;
    let mut open = Vec::new();
    short_string(&mut open, "/");
    short_string(&mut open, "");
    open.push(0);
    send_method(&mut socket, 10, 40, &open)?;
    expect_method(&mut socket, 10, 41)?; // connection.open-ok
    socket.set_read_timeout(None)?;
    Ok((socket, accepted_at))
}

fn protocol_error(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

fn short_string(buffer: &mut Vec<u8>, text: &str) {
    buffer.push(u8::try_from(text.len()).expect("a short string"));
    buffer.extend(text.as_bytes());
}

fn send_method(
    socket: &mut TcpStream,
    class: u16,
    method: u16,
    args: &[u8],
) -> std::io::Result<()> {
    let size = u32::try_from(4 + args.len()).expect("a small frame");
    let mut frame = vec![1, 0, 0];
    frame.extend(size.to_be_bytes());
    frame.extend(class.to_be_bytes());
    frame.extend(method.to_be_bytes());
    frame.extend(args);
    frame.push(0xce);
    socket.write_all(&frame)
}

/// Reads frames until a method frame; returns its arguments if it is
/// `class.method`.
fn expect_method(socket: &mut TcpStream, class: u16, method: u16) -> std::io::Result<Vec<u8>> {
    loop {
        let mut header = [0u8; 7];
        socket.read_exact(&mut header)?;
        let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
        let mut payload = vec![0; usize::try_from(size).expect("usize") + 1];
        socket.read_exact(&mut payload)?;
        if payload.pop() != Some(0xce) {
            return Err(protocol_error("a frame without its end marker"));
        }
        if header[0] != 1 {
            continue; // a heartbeat
        }
        let ids = payload
            .get(..4)
            .ok_or_else(|| protocol_error("a short method frame"))?;
        if ids[..2] == class.to_be_bytes() && ids[2..] == method.to_be_bytes() {
            return Ok(payload.split_off(4));
        }
        return Err(protocol_error(&format!(
            "expected method {class}.{method}, got {}",
            describe_close(&[&header[..], &payload[..]].concat())
        )));
    }
}
