//! How the engine runs sub-tasks: run limits, maintenance batches, polling, this node's
//! name and retention.

use std::time::Duration;

use taskd_store::RunLimits;

/// How the engine runs sub-tasks.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub limits: RunLimits,
    /// Rows per maintenance transaction (a pass repeats until done).
    pub maintenance_batch: u32,
    /// How often a long-polling claim looks again without a wake-up (other nodes' work,
    /// schedule times), and how often the runner's maintenance runs.
    pub poll_interval: Duration,
    /// This node's name in leases and leader elections: unique per process.
    pub node_id: String,
    /// How long a maintenance leadership lasts unless renewed (every `poll_interval`):
    /// the longest a dead leader's jobs wait for another node to take them over.
    pub leader_term: Duration,
    /// Finished tasks (and operations) whose last change is older than this are purged by
    /// maintenance; `None` keeps them forever.
    pub retention: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            limits: RunLimits {
                max_running: 10_000,
                max_running_per_project: 2_000,
            },
            maintenance_batch: 1_000,
            poll_interval: Duration::from_secs(1),
            node_id: default_node_id(),
            leader_term: Duration::from_secs(5),
            retention: Some(DEFAULT_RETENTION),
        }
    }
}

/// Default retention of finished tasks: 180 days (what IoTDA instance tasks promise).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(180 * 24 * 3600);

/// A name no other running taskd process has: host, process id and a random suffix
/// (a restarted process gets a new one, so it never renews a dead predecessor's term).
pub fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "taskd".to_owned());
    format!(
        "{host}/{}/{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}
