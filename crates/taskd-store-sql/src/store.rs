//! [`SqlStore`]: the [`Store`] of every SQL backend, written once over its [`Driver`].
//!
//! Every call first applies the one rule on text (`taskd_store::text`): text with a NUL
//! is never written, and a lookup by it finds nothing. Then it runs the use case: written
//! in this crate's modules.

use std::ops::Deref;
use std::sync::Arc;

use async_trait::async_trait;
use taskd_core::{
    Credential, Device, DeviceGroup, DeviceUpdate, Id, NewDevice, NewDeviceGroup, NewOtaPackage,
    NewTaskFile, OtaPackage, TaskScope, Timestamp,
};
use taskd_store::text::{self, StoredText};
use taskd_store::{
    ClaimParams, ClaimedSubTask, DeviceAttributes, DeviceListParams, FileInsertOutcome,
    GroupListParams, HeartbeatParams, LegacyApp, LegacyOperation, LegacyTask, LegacyTaskListParams,
    LegacyTokens, MaintenanceReport, OtaPackageInsertOutcome, OtaPackageListParams, Page,
    RegistryRefusal, ReportOutcome, ReportParams, SecretReset, Store, StoreResult,
    SubTaskListParams, TaskControlOutcome, TaskControlParams, TaskDeleteOutcome, TaskFileContent,
    TaskInsertParams, TaskListParams,
};
use taskd_store::{
    DesiredUpdate, DeviceLogin, DeviceMessage, DeviceSession, DeviceVersions, MessageRefusal,
    MessageStatus, NewDeviceMessage, NodeMailRefusal, NodesReaped, ReportedProperties,
    SessionRefusal, ShadowRefusal, ShadowService,
};
use tokio::sync::Notify;

use crate::driver::{Conn, Driver, Stmt};
use crate::{
    channel, control, credentials, files, legacy, nodes, operations, ota, registry, run, tasks,
};

/// A [`Store`] on a SQL database reached through the driver `D`. Cheap to clone when the
/// driver is (pools are shared). Derefs to the driver, for what only one backend offers
/// (closing, fault injection, benchmark seeding).
#[derive(Debug, Clone)]
pub struct SqlStore<D> {
    driver: D,
}

impl<D> SqlStore<D> {
    pub fn new(driver: D) -> Self {
        SqlStore { driver }
    }

    pub fn driver(&self) -> &D {
        &self.driver
    }
}

impl<D> Deref for SqlStore<D> {
    type Target = D;

    fn deref(&self) -> &D {
        &self.driver
    }
}

impl<D: Driver> SqlStore<D> {
    /// A group membership change whose group or device cannot exist (a NUL in its id):
    /// the refusal the backend would give, group first.
    async fn member_finds_nothing(
        &self,
        scope: &TaskScope,
        group_id: &str,
        device_id: &str,
    ) -> StoreResult<Option<RegistryRefusal>> {
        if !text::scope_finds_nothing(scope, [group_id, device_id]) {
            return Ok(None);
        }
        if text::scope_finds_nothing(scope, [group_id])
            || self.group_get(scope, group_id).await?.is_none()
        {
            return Ok(Some(RegistryRefusal::GroupNotFound));
        }
        Ok(Some(RegistryRefusal::DeviceNotFound))
    }
}

#[async_trait]
impl<D: Driver> Store for SqlStore<D> {
    async fn ping(&self) -> StoreResult<()> {
        self.driver
            .read()
            .await?
            .execute(Stmt::new("SELECT 1"))
            .await?;
        Ok(())
    }

    async fn check_writable(&self, now: Timestamp) -> StoreResult<()> {
        self.driver.check_writable(now).await
    }

    async fn project_ensure(&self, project_id: &str, now: Timestamp) -> StoreResult<()> {
        text::check("project_id", project_id)?;
        credentials::project_ensure(&self.driver, project_id, now).await
    }

    async fn credential_put(&self, credential: &Credential) -> StoreResult<()> {
        credential.check_text()?;
        credentials::put(&self.driver, credential).await
    }

    async fn credential_get(&self, access_key: &str) -> StoreResult<Option<Credential>> {
        if text::finds_nothing([access_key]) {
            return Ok(None);
        }
        credentials::get(&self.driver, access_key).await
    }

    async fn credential_list(&self) -> StoreResult<Vec<Credential>> {
        credentials::list(&self.driver).await
    }

    async fn credential_revoke(&self, access_key: &str, now: Timestamp) -> StoreResult<bool> {
        if text::finds_nothing([access_key]) {
            return Ok(false);
        }
        credentials::revoke(&self.driver, access_key, now).await
    }

    async fn task_insert(&self, params: TaskInsertParams) -> StoreResult<taskd_core::Task> {
        params.check_text()?;
        tasks::insert(&self.driver, params, None).await
    }

    async fn task_get(&self, scope: &TaskScope, id: Id) -> StoreResult<Option<taskd_core::Task>> {
        if text::scope_finds_nothing(scope, []) {
            return Ok(None);
        }
        tasks::get(&self.driver, scope, id).await
    }

    async fn task_list(&self, params: &TaskListParams) -> StoreResult<Page<taskd_core::Task>> {
        let f = &params.filter;
        if text::scope_finds_nothing(
            &params.scope,
            [&f.app_id, &f.kind]
                .into_iter()
                .flatten()
                .map(String::as_str),
        ) {
            return Ok(Page::empty());
        }
        tasks::list(&self.driver, params).await
    }

    async fn sub_task_list(
        &self,
        params: &SubTaskListParams,
    ) -> StoreResult<Option<Page<taskd_core::SubTask>>> {
        if params.target.as_deref().is_some_and(text::has_nul) {
            // No sub-task has that target: an empty page, if the task is there.
            let task = self.task_get(&params.scope, params.task_id).await?;
            return Ok(task.map(|_| Page::empty()));
        }
        if text::scope_finds_nothing(&params.scope, []) {
            return Ok(None);
        }
        tasks::sub_task_list(&self.driver, params).await
    }

    async fn task_delete(&self, scope: &TaskScope, id: Id) -> StoreResult<TaskDeleteOutcome> {
        if text::scope_finds_nothing(scope, []) {
            return Ok(TaskDeleteOutcome::NotFound);
        }
        tasks::delete(&self.driver, scope, id).await
    }

    async fn purge_finished(&self, before: Timestamp, max_rows: u32) -> StoreResult<u64> {
        operations::purge_finished(&self.driver, before, max_rows).await
    }

    async fn op_list(
        &self,
        params: &taskd_store::OpListParams,
    ) -> StoreResult<Page<taskd_store::OpRecord>> {
        if text::scope_finds_nothing(&params.scope, []) {
            return Ok(Page::empty());
        }
        operations::list(&self.driver, params).await
    }

    async fn op_get(
        &self,
        scope: &TaskScope,
        id: Id,
    ) -> StoreResult<Option<taskd_store::OpRecord>> {
        if text::scope_finds_nothing(scope, []) {
            return Ok(None);
        }
        operations::get(&self.driver, scope, id).await
    }

    async fn op_instance_owner(
        &self,
        service: taskd_core::OpService,
        instance_id: &str,
    ) -> StoreResult<Option<String>> {
        if text::finds_nothing([instance_id]) {
            return Ok(None);
        }
        operations::instance_owner(&self.driver, service, instance_id).await
    }

    async fn task_control(&self, params: TaskControlParams) -> StoreResult<TaskControlOutcome> {
        if text::scope_finds_nothing(&params.scope, []) {
            return Ok(TaskControlOutcome::NotFound);
        }
        control::task_control(&self.driver, params).await
    }

    async fn sub_task_claim(&self, params: ClaimParams) -> StoreResult<Vec<ClaimedSubTask>> {
        params.check_text()?;
        let mut params = params;
        params.kinds.retain(|k| !text::has_nul(k));
        if params.kinds.is_empty() || text::finds_nothing(params.project_id.as_deref()) {
            return Ok(Vec::new());
        }
        run::claim(&self.driver, params).await
    }

    async fn sub_task_heartbeat(&self, params: HeartbeatParams) -> StoreResult<Option<Timestamp>> {
        if text::finds_nothing(params.project_id.as_deref()) {
            return Ok(None);
        }
        run::heartbeat(&self.driver, params).await
    }

    async fn sub_task_report(&self, params: ReportParams) -> StoreResult<Vec<ReportOutcome>> {
        params.check_text()?;
        if text::finds_nothing(params.project_id.as_deref()) {
            return Ok(vec![ReportOutcome::LeaseLost; params.results.len()]);
        }
        run::report(&self.driver, params).await
    }

    async fn maintain(&self, now: Timestamp, max_rows: u32) -> StoreResult<MaintenanceReport> {
        run::maintain(&self.driver, now, max_rows).await
    }

    async fn leader_acquire(&self, params: &taskd_store::LeaderParams) -> StoreResult<bool> {
        params.check_text()?;
        run::leader_acquire(&self.driver, params).await
    }

    async fn leader_release(&self, name: &str, holder: &str) -> StoreResult<()> {
        if text::finds_nothing([name, holder]) {
            return Ok(());
        }
        run::leader_release(&self.driver, name, holder).await
    }

    fn wakeups(&self) -> Option<Arc<Notify>> {
        self.driver.wakeups()
    }

    async fn next_due(&self, now: Timestamp) -> StoreResult<Option<Timestamp>> {
        let tasks = run::next_due(&self.driver, now).await?;
        let messages = channel::next_expiry(&self.driver).await?;
        Ok(tasks.into_iter().chain(messages).min())
    }

    async fn file_insert(
        &self,
        file: NewTaskFile,
        max_files: u32,
        now: Timestamp,
    ) -> StoreResult<FileInsertOutcome> {
        file.check_text()?;
        files::insert(&self.driver, file, max_files, now).await
    }

    async fn file_list(&self, scope: &TaskScope) -> StoreResult<Vec<taskd_core::TaskFile>> {
        if text::scope_finds_nothing(scope, []) {
            return Ok(Vec::new());
        }
        files::list(&self.driver, scope).await
    }

    async fn file_get(
        &self,
        scope: &TaskScope,
        file_id: &str,
    ) -> StoreResult<Option<TaskFileContent>> {
        if text::scope_finds_nothing(scope, [file_id]) {
            return Ok(None);
        }
        files::get(&self.driver, scope, file_id).await
    }

    async fn file_delete(&self, scope: &TaskScope, file_id: &str) -> StoreResult<bool> {
        if text::scope_finds_nothing(scope, [file_id]) {
            return Ok(false);
        }
        files::delete(&self.driver, scope, file_id).await
    }

    async fn device_insert(
        &self,
        device: NewDevice,
        now: Timestamp,
    ) -> StoreResult<Result<Device, RegistryRefusal>> {
        device.check_text()?;
        registry::insert(&self.driver, device, now).await
    }

    async fn device_get(&self, scope: &TaskScope, device_id: &str) -> StoreResult<Option<Device>> {
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(None);
        }
        registry::get(&self.driver, scope, device_id).await
    }

    async fn device_list(&self, params: &DeviceListParams) -> StoreResult<Page<Device>> {
        let f = &params.filter;
        let keys = [&f.product_id, &f.node_id, &f.device_name, &f.app_id]
            .into_iter()
            .flatten()
            .chain(f.gateway.as_ref().map(|g| &g.gateway_id))
            .map(String::as_str);
        if text::scope_finds_nothing(&params.scope, keys) {
            return Ok(Page::empty());
        }
        registry::list(&self.driver, params).await
    }

    async fn device_update(
        &self,
        scope: &TaskScope,
        device_id: &str,
        update: DeviceUpdate,
        now: Timestamp,
    ) -> StoreResult<Result<Device, RegistryRefusal>> {
        update.check_text()?;
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(Err(RegistryRefusal::DeviceNotFound));
        }
        registry::update(&self.driver, scope, device_id, update, now).await
    }

    async fn device_delete(
        &self,
        scope: &TaskScope,
        device_id: &str,
        now: Timestamp,
    ) -> StoreResult<Result<(), RegistryRefusal>> {
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(Err(RegistryRefusal::DeviceNotFound));
        }
        registry::delete(&self.driver, scope, device_id, now).await
    }

    async fn device_freeze(
        &self,
        scope: &TaskScope,
        device_id: &str,
        now: Timestamp,
    ) -> StoreResult<Result<(), RegistryRefusal>> {
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(Err(RegistryRefusal::DeviceNotFound));
        }
        registry::set_frozen(&self.driver, scope, device_id, true, now).await
    }

    async fn device_reset_secret(
        &self,
        reset: &SecretReset,
        now: Timestamp,
    ) -> StoreResult<Result<(), RegistryRefusal>> {
        text::check("secret", &reset.secret)?;
        if text::scope_finds_nothing(&reset.scope, [reset.device_id.as_str()]) {
            return Ok(Err(RegistryRefusal::DeviceNotFound));
        }
        registry::reset_secret(&self.driver, reset, now).await
    }

    async fn device_unfreeze(
        &self,
        scope: &TaskScope,
        device_id: &str,
        now: Timestamp,
    ) -> StoreResult<Result<(), RegistryRefusal>> {
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(Err(RegistryRefusal::DeviceNotFound));
        }
        registry::set_frozen(&self.driver, scope, device_id, false, now).await
    }

    async fn ota_package_insert(
        &self,
        package: NewOtaPackage,
        max_packages: u32,
        now: Timestamp,
    ) -> StoreResult<OtaPackageInsertOutcome> {
        package.check_text()?;
        ota::insert(&self.driver, package, max_packages, now).await
    }

    async fn ota_package_get(&self, scope: &TaskScope, id: Id) -> StoreResult<Option<OtaPackage>> {
        if text::scope_finds_nothing(scope, []) {
            return Ok(None);
        }
        ota::get(&self.driver, scope, id).await
    }

    async fn ota_package_list(
        &self,
        params: &OtaPackageListParams,
    ) -> StoreResult<Page<OtaPackage>> {
        let f = &params.filter;
        if text::scope_finds_nothing(
            &params.scope,
            [&f.app_id, &f.product_id, &f.version]
                .into_iter()
                .flatten()
                .map(String::as_str),
        ) {
            return Ok(Page::empty());
        }
        ota::list(&self.driver, params).await
    }

    async fn ota_package_delete(&self, scope: &TaskScope, id: Id) -> StoreResult<bool> {
        if text::scope_finds_nothing(scope, []) {
            return Ok(false);
        }
        ota::delete(&self.driver, scope, id).await
    }

    async fn group_insert(
        &self,
        group: NewDeviceGroup,
        now: Timestamp,
    ) -> StoreResult<Result<DeviceGroup, RegistryRefusal>> {
        group.check_text()?;
        registry::group_insert(&self.driver, group, now).await
    }

    async fn group_get(
        &self,
        scope: &TaskScope,
        group_id: &str,
    ) -> StoreResult<Option<DeviceGroup>> {
        if text::scope_finds_nothing(scope, [group_id]) {
            return Ok(None);
        }
        registry::group_get(&self.driver, scope, group_id).await
    }

    async fn group_list(&self, params: &GroupListParams) -> StoreResult<Page<DeviceGroup>> {
        let f = &params.filter;
        if text::scope_finds_nothing(
            &params.scope,
            [&f.app_id, &f.name]
                .into_iter()
                .flatten()
                .map(String::as_str),
        ) {
            return Ok(Page::empty());
        }
        registry::group_list(&self.driver, params).await
    }

    async fn group_delete(
        &self,
        scope: &TaskScope,
        group_id: &str,
    ) -> StoreResult<Result<(), RegistryRefusal>> {
        if text::scope_finds_nothing(scope, [group_id]) {
            return Ok(Err(RegistryRefusal::GroupNotFound));
        }
        registry::group_delete(&self.driver, scope, group_id).await
    }

    async fn group_add_device(
        &self,
        scope: &TaskScope,
        group_id: &str,
        device_id: &str,
        now: Timestamp,
    ) -> StoreResult<Result<(), RegistryRefusal>> {
        if let Some(refusal) = self
            .member_finds_nothing(scope, group_id, device_id)
            .await?
        {
            return Ok(Err(refusal));
        }
        registry::group_set_member(&self.driver, scope, group_id, device_id, true, now).await
    }

    async fn group_remove_device(
        &self,
        scope: &TaskScope,
        group_id: &str,
        device_id: &str,
        now: Timestamp,
    ) -> StoreResult<Result<(), RegistryRefusal>> {
        if let Some(refusal) = self
            .member_finds_nothing(scope, group_id, device_id)
            .await?
        {
            return Ok(Err(refusal));
        }
        registry::group_set_member(&self.driver, scope, group_id, device_id, false, now).await
    }

    async fn device_group_members(
        &self,
        scope: &TaskScope,
        group_ids: &[String],
    ) -> StoreResult<Result<Vec<String>, String>> {
        if text::scope_finds_nothing(scope, []) {
            return Ok(group_ids.first().cloned().map_or(Ok(Vec::new()), Err));
        }
        // The groups before the first that cannot exist decide; else that one is missing.
        if let Some(at) = group_ids.iter().position(|g| text::has_nul(g)) {
            return match registry::group_members(&self.driver, scope, &group_ids[..at]).await? {
                Err(missing) => Ok(Err(missing)),
                Ok(_) => Ok(Err(group_ids[at].clone())),
            };
        }
        registry::group_members(&self.driver, scope, group_ids).await
    }

    async fn device_logins(&self, device_id: &str) -> StoreResult<Vec<DeviceLogin>> {
        if text::finds_nothing([device_id]) {
            return Ok(Vec::new());
        }
        channel::device_logins(&self.driver, device_id).await
    }

    async fn device_session_open(
        &self,
        session: &DeviceSession,
    ) -> StoreResult<Result<Option<DeviceSession>, SessionRefusal>> {
        session.check_text()?;
        channel::session_open(&self.driver, session).await
    }

    async fn device_sessions_open(
        &self,
        sessions: &[DeviceSession],
    ) -> StoreResult<Vec<Result<Option<DeviceSession>, SessionRefusal>>> {
        for s in sessions {
            s.check_text()?;
        }
        channel::sessions_open(&self.driver, sessions).await
    }

    async fn device_session_close(
        &self,
        scope: &TaskScope,
        device_id: &str,
        session_id: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        if text::scope_finds_nothing(scope, [device_id, session_id]) {
            return Ok(false);
        }
        channel::session_close(&self.driver, scope, device_id, session_id, now).await
    }

    async fn device_session_get(
        &self,
        scope: &TaskScope,
        device_id: &str,
    ) -> StoreResult<Option<DeviceSession>> {
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(None);
        }
        channel::session_get(&self.driver, scope, device_id).await
    }

    async fn device_sessions_close_node(&self, node_id: &str, now: Timestamp) -> StoreResult<u64> {
        if text::finds_nothing([node_id]) {
            return Ok(0);
        }
        channel::sessions_close_node(&self.driver, node_id, now).await
    }

    async fn node_heartbeat(&self, node_id: &str, now: Timestamp) -> StoreResult<bool> {
        text::check("node_id", node_id)?;
        nodes::heartbeat(&self.driver, node_id, now).await
    }

    async fn nodes_reap(&self, seen_before: Timestamp, now: Timestamp) -> StoreResult<NodesReaped> {
        nodes::reap(&self.driver, seen_before, now).await
    }

    async fn node_mail_send(
        &self,
        node_id: &str,
        body: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<Result<(), NodeMailRefusal>> {
        text::check("node_id", node_id)?;
        text::check("body", body)?;
        nodes::mail_send(&self.driver, node_id, body, now, expires_at).await
    }

    async fn node_mail_take(
        &self,
        node_id: &str,
        now: Timestamp,
        max: u32,
    ) -> StoreResult<Vec<String>> {
        if text::finds_nothing([node_id]) {
            return Ok(Vec::new());
        }
        nodes::mail_take(&self.driver, node_id, now, max).await
    }

    fn node_mail_wakeups(&self) -> Option<Arc<Notify>> {
        self.driver.mail_wakeups()
    }

    async fn device_versions_put(
        &self,
        scope: &TaskScope,
        device_id: &str,
        versions: &DeviceVersions,
        _now: Timestamp,
    ) -> StoreResult<bool> {
        versions.check_text()?;
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(false);
        }
        channel::versions_put(&self.driver, scope, device_id, versions).await
    }

    async fn shadow_get(
        &self,
        scope: &TaskScope,
        device_id: &str,
    ) -> StoreResult<Option<Vec<ShadowService>>> {
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(None);
        }
        channel::shadow_get(&self.driver, scope, device_id).await
    }

    async fn shadow_update_desired(
        &self,
        scope: &TaskScope,
        device_id: &str,
        updates: Vec<DesiredUpdate>,
        now: Timestamp,
    ) -> StoreResult<Result<Vec<ShadowService>, ShadowRefusal>> {
        for u in &updates {
            u.check_text()?;
        }
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(Err(ShadowRefusal::DeviceNotFound));
        }
        channel::shadow_update_desired(&self.driver, scope, device_id, updates, now).await
    }

    async fn shadow_report(
        &self,
        scope: &TaskScope,
        device_id: &str,
        reported: Vec<ReportedProperties>,
        now: Timestamp,
    ) -> StoreResult<Result<Vec<ShadowService>, ShadowRefusal>> {
        for r in &reported {
            r.check_text()?;
        }
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(Err(ShadowRefusal::DeviceNotFound));
        }
        channel::shadow_report(&self.driver, scope, device_id, reported, now).await
    }

    async fn message_insert(
        &self,
        message: NewDeviceMessage,
        now: Timestamp,
    ) -> StoreResult<Result<DeviceMessage, MessageRefusal>> {
        message.check_text()?;
        channel::message_insert(&self.driver, message, now).await
    }

    async fn message_get(
        &self,
        scope: &TaskScope,
        device_id: &str,
        message_id: &str,
    ) -> StoreResult<Option<DeviceMessage>> {
        if text::scope_finds_nothing(scope, [device_id, message_id]) {
            return Ok(None);
        }
        channel::message_get(&self.driver, scope, device_id, message_id).await
    }

    async fn message_list(
        &self,
        scope: &TaskScope,
        device_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<DeviceMessage>> {
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(Vec::new());
        }
        channel::message_list(&self.driver, scope, device_id, limit).await
    }

    async fn message_finish(
        &self,
        scope: &TaskScope,
        device_id: &str,
        message_id: &str,
        status: MessageStatus,
        error: Option<(String, String)>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        if let Some((code, msg)) = &error {
            text::check("error_code", code)?;
            text::check("error_msg", msg)?;
        }
        if text::scope_finds_nothing(scope, [device_id, message_id]) {
            return Ok(false);
        }
        channel::message_finish(
            &self.driver,
            scope,
            device_id,
            message_id,
            status,
            error,
            now,
        )
        .await
    }

    async fn messages_pending(
        &self,
        scope: &TaskScope,
        device_id: &str,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<DeviceMessage>> {
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(Vec::new());
        }
        channel::messages_pending(&self.driver, scope, device_id, now, limit).await
    }

    async fn legacy_app_put(&self, app: &LegacyApp) -> StoreResult<()> {
        app.check_text()?;
        legacy::app_put(&self.driver, app).await
    }

    async fn legacy_app_get(&self, app_id: &str) -> StoreResult<Option<LegacyApp>> {
        if text::finds_nothing([app_id]) {
            return Ok(None);
        }
        legacy::app_get(&self.driver, app_id).await
    }

    async fn legacy_app_list(&self) -> StoreResult<Vec<LegacyApp>> {
        legacy::app_list(&self.driver).await
    }

    async fn legacy_app_revoke(&self, app_id: &str, now: Timestamp) -> StoreResult<bool> {
        if text::finds_nothing([app_id]) {
            return Ok(false);
        }
        legacy::app_revoke(&self.driver, app_id, now).await
    }

    async fn legacy_tokens_put(&self, tokens: &LegacyTokens) -> StoreResult<bool> {
        tokens.check_text()?;
        legacy::tokens_put(&self.driver, tokens).await
    }

    async fn legacy_tokens_get(&self, app_id: &str) -> StoreResult<Option<LegacyTokens>> {
        if text::finds_nothing([app_id]) {
            return Ok(None);
        }
        legacy::tokens_get(&self.driver, app_id).await
    }

    async fn legacy_rate_hit(&self, app_id: &str, window_start: Timestamp) -> StoreResult<i64> {
        text::check("appId", app_id)?;
        legacy::rate_hit(&self.driver, app_id, window_start).await
    }

    async fn device_attributes_put(
        &self,
        scope: &TaskScope,
        device_id: &str,
        attributes: &DeviceAttributes,
    ) -> StoreResult<bool> {
        attributes.check_text()?;
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(false);
        }
        legacy::attributes_put(&self.driver, scope, device_id, attributes).await
    }

    async fn device_attributes_get(
        &self,
        scope: &TaskScope,
        device_ids: &[String],
    ) -> StoreResult<Vec<(String, DeviceAttributes)>> {
        if text::scope_finds_nothing(scope, []) {
            return Ok(Vec::new());
        }
        if device_ids.iter().any(|d| text::has_nul(d)) {
            let ids: Vec<String> = device_ids
                .iter()
                .filter(|d| !text::has_nul(d))
                .cloned()
                .collect();
            return legacy::attributes_get(&self.driver, scope, &ids).await;
        }
        legacy::attributes_get(&self.driver, scope, device_ids).await
    }

    async fn legacy_task_insert(
        &self,
        params: TaskInsertParams,
        operation: LegacyOperation,
    ) -> StoreResult<taskd_core::Task> {
        params.check_text()?;
        operation.check_text()?;
        tasks::insert(&self.driver, params, Some(&operation)).await
    }

    async fn legacy_task_get(&self, scope: &TaskScope, id: Id) -> StoreResult<Option<LegacyTask>> {
        if text::scope_finds_nothing(scope, []) {
            return Ok(None);
        }
        legacy::task_get(&self.driver, scope, id).await
    }

    async fn legacy_task_list(
        &self,
        params: &LegacyTaskListParams,
    ) -> StoreResult<Page<LegacyTask>> {
        let keys = [
            &params.operate_type,
            &params.device_type,
            &params.model,
            &params.manufacturer_name,
            &params.device_id,
        ];
        if text::scope_finds_nothing(
            &params.scope,
            keys.into_iter().flatten().map(String::as_str),
        ) {
            return Ok(Page::empty());
        }
        legacy::task_list(&self.driver, params).await
    }

    async fn close(&self) {
        self.driver.close().await;
    }
}
