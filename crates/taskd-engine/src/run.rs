//! Running sub-tasks: claims (long-polling), heartbeats and batched results, for
//! workers and built-in executors alike.

use std::time::Duration;

use taskd_core::{Id, Timestamp};
use taskd_store::{
    ClaimParams, ClaimedSubTask, HeartbeatParams, ReportOutcome, ReportParams, RunResult,
};

use crate::{Engine, EngineResult};

/// What an executor asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    pub worker_id: String,
    /// `None`: every project (taskd's own executors).
    pub project_id: Option<String>,
    pub kinds: Vec<String>,
    pub max: u32,
    pub lease: Duration,
    /// Long-poll: wait up to this long for something to become ready.
    pub wait: Duration,
}

impl Engine {
    /// Leases ready sub-tasks to an executor. With a `wait`, polls until something is
    /// ready or the wait is over: woken at once by work created or released on this
    /// node, and every `poll_interval` for the rest (other nodes, schedule times).
    pub async fn claim(&self, request: ClaimRequest) -> EngineResult<Vec<ClaimedSubTask>> {
        let deadline = tokio::time::Instant::now() + request.wait;
        let lease_ms = i64::try_from(request.lease.as_millis()).unwrap_or(i64::MAX);
        loop {
            // Registered before looking, so a wake-up between the look and the wait
            // is not lost.
            let woken = self.wakeup();
            let now = self.now();
            let claimed = self
                .store
                .sub_task_claim(ClaimParams {
                    worker_id: request.worker_id.clone(),
                    project_id: request.project_id.clone(),
                    kinds: request.kinds.clone(),
                    max: request.max,
                    lease_until: now.plus_millis(lease_ms),
                    limits: self.config.limits,
                    now,
                })
                .await?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !claimed.is_empty() || left.is_zero() {
                if !claimed.is_empty() {
                    tracing::debug!(worker = %request.worker_id, n = claimed.len(), "sub-tasks claimed");
                }
                return Ok(claimed);
            }
            let _ = tokio::time::timeout(left.min(self.config.poll_interval), woken).await;
        }
    }

    /// Extends a lease; `None` when it is lost (stopped, expired, claimed again).
    pub async fn heartbeat(
        &self,
        project_id: Option<String>,
        sub_task_id: Id,
        attempt: u32,
        lease: Duration,
        progress: Option<u8>,
    ) -> EngineResult<Option<Timestamp>> {
        let now = self.now();
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        Ok(self
            .store
            .sub_task_heartbeat(HeartbeatParams {
                project_id,
                sub_task_id,
                attempt,
                lease_until: now.plus_millis(lease_ms),
                progress,
                now,
            })
            .await?)
    }

    /// Records run results, one transaction for the batch.
    pub async fn report(
        &self,
        project_id: Option<String>,
        results: Vec<RunResult>,
    ) -> EngineResult<Vec<ReportOutcome>> {
        let outcomes = self
            .store
            .sub_task_report(ReportParams {
                project_id,
                results,
                now: self.now(),
            })
            .await?;
        // A freed running slot may let a waiting claim through.
        self.wake();
        Ok(outcomes)
    }

    /// Waits until woken (work created or released on this node) or `timeout`.
    pub async fn wait_for_work(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.wakeup()).await;
    }
}
