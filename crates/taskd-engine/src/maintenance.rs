//! Maintenance: the cluster-wide leadership, a pass (due retries, expired leases,
//! deadlines) and retention.

use taskd_core::Timestamp;
use taskd_store::{LeaderParams, MaintenanceReport};

use crate::{Engine, EngineResult};

/// The leader election name of maintenance.
const MAINTENANCE_LEADER: &str = "maintenance";

impl Engine {
    /// Takes or renews this node's leadership of the cluster-wide maintenance (one
    /// leader at a time across the nodes sharing the store); false while another node
    /// leads. The runner calls it before every pass.
    pub async fn lead_maintenance(&self) -> EngineResult<bool> {
        let now = self.now();
        let term = i64::try_from(self.config.leader_term.as_millis()).unwrap_or(i64::MAX);
        Ok(self
            .store
            .leader_acquire(&LeaderParams {
                name: MAINTENANCE_LEADER.to_owned(),
                holder: self.config.node_id.clone(),
                now,
                until: now.plus_millis(term),
            })
            .await?)
    }

    /// Gives the maintenance leadership up (shutdown), so another node takes over at
    /// once rather than when the term lapses.
    pub async fn resign_maintenance(&self) -> EngineResult<()> {
        Ok(self
            .store
            .leader_release(MAINTENANCE_LEADER, &self.config.node_id)
            .await?)
    }

    /// One full maintenance pass at the clock's now: due retries and expired leases go
    /// back to the queue, pending device messages past their expiry time out, in bounded
    /// transactions until nothing is left.
    pub async fn maintain(&self) -> EngineResult<MaintenanceReport> {
        let now = self.now();
        let mut total = MaintenanceReport::default();
        loop {
            let pass = self
                .store
                .maintain(now, self.config.maintenance_batch)
                .await?;
            total.retries_released += pass.retries_released;
            total.leases_expired += pass.leases_expired;
            total.leases_abandoned += pass.leases_abandoned;
            total.timed_out += pass.timed_out;
            total.messages_expired += pass.messages_expired;
            if !pass.more {
                break;
            }
        }
        self.purge_expired(now).await?;
        if total.retries_released + total.leases_expired + total.timed_out > 0 {
            tracing::info!(
                retries_released = total.retries_released,
                leases_expired = total.leases_expired,
                timed_out = total.timed_out,
                "maintenance requeued sub-tasks"
            );
            self.wake();
        }
        if total.messages_expired > 0 {
            tracing::info!(
                messages_expired = total.messages_expired,
                "device messages timed out undelivered"
            );
        }
        if total.leases_abandoned > 0 {
            tracing::warn!(
                leases_abandoned = total.leases_abandoned,
                "sub-tasks failed: their leases expired too many times (LEASE_EXPIRED)"
            );
        }
        Ok(total)
    }

    /// Retention: deletes finished tasks whose last change is older than the configured
    /// retention, in transactions of `maintenance_batch` tasks, yielding between them so
    /// a large backlog never holds the store for long. Returns how many went.
    pub async fn purge_expired(&self, now: Timestamp) -> EngineResult<u64> {
        let Some(retention) = self.config.retention else {
            return Ok(0);
        };
        let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let before = Timestamp(now.0.saturating_sub(keep_ms));
        let batch = self.config.maintenance_batch.max(1);
        let mut total = 0;
        loop {
            let n = self.store.purge_finished(before, batch).await?;
            total += n;
            if n < u64::from(batch) {
                break;
            }
            tokio::task::yield_now().await;
        }
        if total > 0 {
            tracing::info!(purged = total, "retention purged finished tasks");
        }
        Ok(total)
    }
}
