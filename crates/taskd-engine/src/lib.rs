//! The taskd engine: the one place where tasks are created and changed.
//!
//! Dialects validate what a user sent and call the [`Engine`]; the engine resolves a
//! task's targets into sub-tasks and applies control operations through the store, with
//! "now" from the injected [`Clock`]. It knows no wire format and no SQL. Its modules
//! follow the store's:
//! * `tasks`: [`Engine::create_task`], [`Engine::create_legacy_task`] and
//!   [`Engine::create_operation`] (instance operations are tasks with one sub-task: the
//!   engine places them in their service's scope, keeps each instance in one project,
//!   and turns a maintenance window into the schedule time of the window's next opening;
//!   the stores' claim also refuses a closed window, so a retry never starts in one);
//! * `control`: [`Engine::control`] (stop, retry, confirm);
//! * `run`: [`Engine::claim`] hands ready sub-tasks to an executor (a worker over the
//!   worker protocol, or a built-in executor), long-polling when none is ready; the
//!   schedule time, confirm, fairness and running limits are the store's claim rules;
//!   [`Engine::heartbeat`] and [`Engine::report`] extend leases and record results (in
//!   batches, one transaction per batch);
//! * `maintenance`: [`Engine::maintain`] is one pass (retries due, leases expired,
//!   deadlines, then the retention purge of old finished tasks);
//! * [`executors`]: the task types taskd runs itself ([`executors::Executor`]; the
//!   registry's today), one module per executor;
//! * [`runner`]: what a server runs in the background: maintenance on a timer and every
//!   built-in executor; tests call the one-shot methods on virtual time instead.
//!
//! Errors: [`EngineError`] for callers; a sub-task a built-in executor fails records a
//! [`SubTaskErrorKind`], which each dialect renders as its own code.

mod config;
mod control;
pub mod device_channel;
mod error;
pub mod executors;
mod maintenance;
mod run;
pub mod runner;
mod tasks;

use std::sync::Arc;

use taskd_core::{Clock, Timestamp};
use taskd_store::Store;
use tokio::sync::Notify;

pub use config::{DEFAULT_RETENTION, EngineConfig, default_node_id};
pub use error::{EngineError, EngineResult, SubTaskErrorKind};
pub use run::ClaimRequest;
pub use tasks::{MAX_TARGETS_PER_TASK, NewOperation, TargetSource};

#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: Arc<EngineConfig>,
    /// Wakes long-polling claims: something may have become ready on this node.
    ready: Arc<Notify>,
    /// The store's wake-ups from every node (`Store::wakeups`), where it has them.
    pushed: Option<Arc<Notify>>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Engine::with_config(store, clock, EngineConfig::default())
    }

    pub fn with_config(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: EngineConfig) -> Self {
        let pushed = store.wakeups();
        Engine {
            store,
            clock,
            config: Arc::new(config),
            ready: Arc::new(Notify::new()),
            pushed,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Tells long-polling claims to look again.
    pub fn wake(&self) {
        self.ready.notify_waiters();
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Resolves on the next wake-up: from this node (`wake`) or, where the store pushes
    /// them, from any node. Registered at once, before it is awaited, so a wake-up that
    /// comes while the caller looks for work is not lost.
    fn wakeup(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut local = Box::pin(self.ready.clone().notified_owned());
        local.as_mut().enable();
        let mut pushed = self.pushed.clone().map(|n| Box::pin(n.notified_owned()));
        if let Some(p) = pushed.as_mut() {
            p.as_mut().enable();
        }
        async move {
            match pushed {
                Some(pushed) => tokio::select! { _ = local => {}, _ = pushed => {} },
                None => local.await,
            }
        }
    }
}

/// For the fuzz targets in `fuzz/` (docs/fuzzing.md), which check what the engine makes
/// of every task file the reader accepts. Not an API: nothing in taskd calls it.
#[doc(hidden)]
pub mod fuzzing {
    /// The targets of the sub-tasks a task file's rows become, in row order.
    pub fn file_row_targets(columns: &[String], rows: &[Vec<String>]) -> Vec<String> {
        crate::tasks::sub_tasks_from_rows(columns, rows)
            .into_iter()
            .map(|s| s.target)
            .collect()
    }
}
