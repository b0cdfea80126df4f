//! The engine's background loops in a running server: maintenance on a timer (retries
//! due, leases expired), on the one node elected to lead it, and one loop per built-in
//! executor (`executors/`), on every node. Each loop only calls the [`Engine`]'s one-shot
//! methods, which the tests drive directly on virtual time; the loops add nothing but the
//! timer and the shutdown.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Engine;
use crate::executors::{Devices, Executor, registry};

/// Concurrent batches of the device executor per node.
const DEVICE_EXECUTOR_LOOPS: usize = 4;

/// The running loops; [`Runner::shutdown`] stops them and waits.
pub struct Runner {
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Runner {
    /// `registry`: the registry executor (with the device channel, it closes the connections
    /// of devices it freezes or deletes); `devices`: the device executor, on a server with a device listener (without one,
    /// the device task types are left to external workers).
    pub fn start(engine: Engine, registry: registry::Registry, devices: Option<Devices>) -> Runner {
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(maintenance_loop(engine.clone(), cancel.clone()));
        // One loop per built-in executor (`executors/`).
        tasks.spawn(executor_loop(engine.clone(), registry, cancel.clone()));
        if let Some(devices) = devices {
            // Several loops: a batch's report waits for its slowest device (up to the
            // 20 s reply timeout), and the other loops go on claiming meanwhile.
            for _ in 0..DEVICE_EXECUTOR_LOOPS {
                tasks.spawn(executor_loop(
                    engine.clone(),
                    devices.clone(),
                    cancel.clone(),
                ));
            }
        }
        tasks.close();
        Runner { cancel, tasks }
    }

    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.wait().await;
    }
}

/// Every node runs this loop; only the elected leader maintains. Each tick renews (or
/// tries to take) the leadership, so a dead leader's term lapses after `leader_term` and
/// the next node to ask takes over.
async fn maintenance_loop(engine: Engine, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(engine.config().poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let lead = match engine.lead_maintenance().await {
            Ok(lead) => lead,
            Err(e) => {
                // The database may be restarting: log and try again on the next tick.
                tracing::warn!(error = %e, "maintenance leader election failed");
                false
            }
        };
        if lead != leading {
            leading = lead;
            let node = &engine.config().node_id;
            if lead {
                tracing::info!(%node, "this node leads maintenance");
            } else {
                tracing::info!(%node, "this node no longer leads maintenance");
            }
        }
        if !lead {
            continue;
        }
        if let Err(e) = engine.maintain().await {
            tracing::warn!(error = %e, "maintenance pass failed");
        }
    }
    if leading && let Err(e) = engine.resign_maintenance().await {
        tracing::warn!(error = %e, "could not give up the maintenance leadership");
    }
}

/// Runs `executor`'s batches back to back while there is work, then waits for a wake-up
/// (or `poll_interval`: other nodes' work, schedule times); stops on `cancel`, dropping a
/// batch in flight (its report is one transaction: all of it or nothing is recorded, and
/// what is not comes back when its lease expires).
async fn executor_loop<E: Executor>(engine: Engine, executor: E, cancel: CancellationToken) {
    let worker_id = format!("{}/{}", E::NAME, engine.config().node_id);
    loop {
        let ran = tokio::select! {
            _ = cancel.cancelled() => return,
            ran = engine.run_batch(&executor, &worker_id, E::BATCH) => ran,
        };
        match ran {
            // More may be ready: go on at once.
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(executor = E::NAME, error = %e, "executor batch failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = engine.wait_for_work(engine.config().poll_interval) => {}
        }
    }
}
