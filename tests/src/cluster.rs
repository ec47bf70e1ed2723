//! A private RabbitMQ cluster for tests where any node may die: nodes of
//! [`PrivateBroker`] that share one Erlang cookie (a private `HOME`) and
//! join the first. Nothing of the machine's own broker is touched; the
//! nodes are killed, and their directories removed, when the cluster drops.
//!
//! Each node keeps its Raft write-ahead log small
//! (`raft.wal_max_size_bytes`, 64 MiB rather than 512), so that a node takes
//! about 190 MB and three fit beside everything else.
//!
//! What the cluster is asked (`rabbitmqctl`) is never timed: the CLI takes
//! seconds to start on a loaded machine.

use crate::{
    guards::{PATIENCE, within},
    private_broker::{NodeOptions, PrivateBroker, write_cookie},
};
use futures_util::future::join_all;
use std::{path::PathBuf, time::Duration};

/// Each node's `rabbitmq.conf`.
const NODE_CONFIG: &str = "raft.wal_max_size_bytes = 67108864\n";
/// How long to wait for nodes to join, or for a queue's members to come
/// back: a hang guard, long enough for a loaded machine.
const CLUSTER_PATIENCE: Duration = Duration::from_secs(180);

/// A private cluster.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<PrivateBroker>,
    dir: PathBuf,
}

impl Cluster {
    /// Starts `size` nodes, joins them into one cluster and waits until all
    /// run in it.
    pub async fn start(size: usize) -> Self {
        assert!(size >= 1);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("rpc-tests-cluster-{id}"));
        let home = dir.join("home");
        write_cookie(&home, &format!("rpctestscluster{id}"));
        let mut nodes: Vec<PrivateBroker> = (1..=size)
            .map(|index| {
                PrivateBroker::create(&NodeOptions {
                    home: Some(home.clone()),
                    name: Some(format!("rmq{index}")),
                    config: NODE_CONFIG.to_owned(),
                    ..NodeOptions::default()
                })
            })
            .collect();
        join_all(nodes.iter_mut().map(PrivateBroker::boot)).await;
        let cluster = Self { nodes, dir };
        let first = cluster.nodes[0].node_name().to_owned();
        for node in &cluster.nodes[1..] {
            for args in [&["stop_app"][..], &["join_cluster", &first], &["start_app"]] {
                node.ctl(args)
                    .await
                    .unwrap_or_else(|error| panic!("joining the cluster: {error}"));
            }
        }
        let count = size.to_string();
        cluster.nodes[0]
            .ctl(&["await_online_nodes", &count, "--timeout", "180"])
            .await
            .unwrap_or_else(|error| panic!("the cluster did not form: {error}"));
        cluster
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no node (never: [`start`](Self::start)
    /// starts at least one).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `index` (from 0).
    pub fn node(&self, index: usize) -> &PrivateBroker {
        &self.nodes[index]
    }

    /// Node `index` (from 0), to stop, kill or restart.
    pub fn node_mut(&mut self, index: usize) -> &mut PrivateBroker {
        &mut self.nodes[index]
    }

    /// Every node's URL, comma-separated, node `first` first and then the
    /// others in turn: what a client or server preferring that node is
    /// given.
    pub fn urls_from(&self, first: usize) -> String {
        (0..self.nodes.len())
            .map(|offset| self.nodes[(first + offset) % self.nodes.len()].url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs `rabbitmqctl` on a node that is up.
    pub async fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let node = self
            .nodes
            .iter()
            .find(|node| node.is_up())
            .ok_or("no node is up")?;
        node.ctl(args).await
    }

    /// The index of the node holding quorum queue `queue`'s leader.
    pub async fn leader_of(&self, queue: &str) -> usize {
        let (leader, _) = self.quorum_status(queue).await;
        self.index_of(&leader)
            .unwrap_or_else(|| panic!("`{leader}` leads {queue}: not a node of the cluster"))
    }

    /// Waits until every node hosts an online member of quorum queue
    /// `queue`, so that losing any one node keeps a majority.
    pub async fn wait_all_members_online(&self, queue: &str) {
        within(
            CLUSTER_PATIENCE,
            "every member of the queue to be online",
            async {
                loop {
                    let (_, online) = self.quorum_status(queue).await;
                    if online == self.nodes.len() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        )
        .await;
    }

    /// The leader's node name and how many members are online.
    async fn quorum_status(&self, queue: &str) -> (String, usize) {
        let listed = within(
            PATIENCE + CLUSTER_PATIENCE,
            "rabbitmqctl list_queues",
            self.ctl(&[
                "list_queues",
                "--no-table-headers",
                "--silent",
                "name",
                "leader",
                "online",
            ]),
        )
        .await
        .unwrap_or_else(|error| panic!("{error}"));
        let line = listed
            .lines()
            .find(|line| line.split('\t').next() == Some(queue))
            .unwrap_or_else(|| panic!("`{queue}` is not listed: {listed}"));
        let mut fields = line.split('\t').skip(1);
        let leader = fields.next().unwrap_or_default().trim().to_owned();
        let online = fields
            .next()
            .unwrap_or_default()
            .split(',')
            .filter(|member| member.contains('@'))
            .count();
        (leader, online)
    }

    fn index_of(&self, node_name: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|node| node.node_name() == node_name)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Each node kills itself and removes its directory; then the
        // shared home.
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
