//! The device registry: devices, static groups and their members.
//!
//! [`apply_device_effect`] is the one implementation of each device write (create,
//! update, delete, freeze, unfreeze). It runs inside a transaction its caller owns: the
//! store's own device methods below, and the runner recording a registry sub-task's
//! result, so the effect and the result commit together.

use std::collections::BTreeSet;

use sqlx::SqliteConnection;
use taskd_core::device::{
    MAX_DEVICES_PER_GROUP, MAX_GROUP_DEPTH, MAX_GROUPS_PER_DEVICE, MAX_GROUPS_PER_SCOPE,
    MAX_SUB_DEVICE_LEVEL,
};
use taskd_core::{
    Device, DeviceGroup, DeviceStatus, DeviceUpdate, Id, NewDevice, NewDeviceGroup, TaskScope,
    Timestamp,
};
use taskd_store::{
    DeviceEffect, DeviceEffectRefused, DeviceListParams, GroupListParams, Page, RegistryRefusal,
    StoreResult,
};

use crate::rows::devices::{DeviceRow, GroupRow, space_key};
use crate::rows::{corrupt, device_columns, group_columns};
use crate::{SqliteDriver, begin_read, begin_write, db};

type Refusable<T> = StoreResult<Result<T, RegistryRefusal>>;

// ---- the effects -------------------------------------------------------------------------

/// Applies one registry effect inside the caller's transaction (never begins, never
/// commits). A refusal has written nothing.
// Called by `run::report` when it records a registry sub-task's success.
pub(crate) async fn apply_device_effect(
    conn: &mut SqliteConnection,
    scope: &TaskScope,
    effect: &DeviceEffect,
    now: Timestamp,
) -> StoreResult<Result<(), DeviceEffectRefused>> {
    Ok(apply(conn, scope, effect, now).await?.map_err(Into::into))
}

pub(crate) async fn apply(
    conn: &mut SqliteConnection,
    scope: &TaskScope,
    effect: &DeviceEffect,
    now: Timestamp,
) -> Refusable<()> {
    match effect {
        DeviceEffect::Create(new) => create(conn, scope, new, now).await,
        DeviceEffect::Update { device_id, update } => {
            modify(conn, scope, device_id, update, now).await
        }
        DeviceEffect::Delete { device_id } => remove(conn, scope, device_id).await,
        DeviceEffect::Freeze { device_id } => freeze(conn, scope, device_id, now).await,
        DeviceEffect::Unfreeze { device_id } => unfreeze(conn, scope, device_id, now).await,
    }
}

pub(crate) const DEVICE_GET_SQL: &str = concat!(
    "SELECT ",
    device_columns!(),
    " FROM devices WHERE project_id = ? AND instance_id = ? AND device_id = ?"
);

async fn load_row(
    conn: &mut SqliteConnection,
    scope: &TaskScope,
    device_id: &str,
) -> StoreResult<Option<DeviceRow>> {
    sqlx::query_as::<_, DeviceRow>(DEVICE_GET_SQL)
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .bind(device_id)
        .fetch_optional(conn)
        .await
        .map_err(db)
}

async fn load(
    conn: &mut SqliteConnection,
    scope: &TaskScope,
    device_id: &str,
) -> StoreResult<Option<Device>> {
    load_row(conn, scope, device_id)
        .await?
        .map(DeviceRow::into_device)
        .transpose()
}

/// The next registry id: never below the clock's floor, never below one handed out.
async fn allocate(conn: &mut SqliteConnection, now: Timestamp) -> StoreResult<Id> {
    let id: i64 = sqlx::query_scalar(
        "UPDATE registry_id_allocator SET last_id = MAX(last_id + 1, ?) WHERE singleton = 0 \
         RETURNING last_id",
    )
    .bind(Id::floor_at(now.0).0)
    .fetch_one(conn)
    .await
    .map_err(db)?;
    Ok(Id(id))
}

async fn create(
    conn: &mut SqliteConnection,
    scope: &TaskScope,
    new: &NewDevice,
    now: Timestamp,
) -> Refusable<()> {
    if new.scope != *scope {
        return Err(corrupt(format!(
            "device {} to create in {scope:?} names scope {:?}",
            new.device_id, new.scope
        )));
    }
    if load_row(conn, scope, &new.device_id).await?.is_some() {
        return Ok(Err(RegistryRefusal::DeviceExists));
    }
    let (gateway_id, root_id, level) = match &new.gateway_id {
        None => (new.device_id.clone(), new.device_id.clone(), 0),
        Some(g) => {
            let Some(gw) = load_row(conn, scope, g).await? else {
                return Ok(Err(RegistryRefusal::GatewayNotFound));
            };
            if gw.level >= MAX_SUB_DEVICE_LEVEL {
                return Ok(Err(RegistryRefusal::GatewayTooDeep));
            }
            (g.clone(), gw.root_id.clone(), gw.level + 1)
        }
    };
    let id = allocate(conn, now).await?;
    sqlx::query(
        "INSERT INTO devices (project_id, instance_id, device_id, id, node_id, product_id, \
         device_name, description, gateway_id, root_id, level, app_id, auth_type, secret, \
         fingerprint, secure_access, timeout, extension_info_json, status, \
         status_before_freeze, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
    )
    .bind(&scope.project_id)
    .bind(&scope.instance_id)
    .bind(&new.device_id)
    .bind(id.0)
    .bind(&new.node_id)
    .bind(&new.product_id)
    .bind(&new.device_name)
    .bind(&new.description)
    .bind(gateway_id)
    .bind(root_id)
    .bind(level)
    .bind(space_key(new.app_id.as_deref()))
    .bind(new.auth_type.as_str())
    .bind(&new.secret)
    .bind(&new.fingerprint)
    .bind(new.secure_access)
    .bind(i64::from(new.timeout))
    .bind(&new.extension_info_json)
    .bind(DeviceStatus::Inactive.as_str())
    .bind(now.0)
    .bind(now.0)
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(Ok(()))
}

async fn modify(
    conn: &mut SqliteConnection,
    scope: &TaskScope,
    device_id: &str,
    update: &DeviceUpdate,
    now: Timestamp,
) -> Refusable<()> {
    let changed = sqlx::query(
        "UPDATE devices SET device_name = COALESCE(?, device_name), \
         description = COALESCE(?, description), \
         extension_info_json = COALESCE(?, extension_info_json), \
         secure_access = COALESCE(?, secure_access), timeout = COALESCE(?, timeout), \
         updated_at = ? WHERE project_id = ? AND instance_id = ? AND device_id = ?",
    )
    .bind(&update.device_name)
    .bind(&update.description)
    .bind(&update.extension_info_json)
    .bind(update.secure_access)
    .bind(update.timeout.map(i64::from))
    .bind(now.0)
    .bind(&scope.project_id)
    .bind(&scope.instance_id)
    .bind(device_id)
    .execute(conn)
    .await
    .map_err(db)?
    .rows_affected();
    Ok(if changed == 1 {
        Ok(())
    } else {
        Err(RegistryRefusal::DeviceNotFound)
    })
}

pub(crate) const HAS_SUB_DEVICES_SQL: &str = "SELECT EXISTS (SELECT 1 FROM devices \
     WHERE project_id = ? AND instance_id = ? AND gateway_id = ? AND device_id <> ?)";

async fn remove(conn: &mut SqliteConnection, scope: &TaskScope, device_id: &str) -> Refusable<()> {
    if load_row(conn, scope, device_id).await?.is_none() {
        return Ok(Err(RegistryRefusal::DeviceNotFound));
    }
    let has_children: bool = sqlx::query_scalar(HAS_SUB_DEVICES_SQL)
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .bind(device_id)
        .bind(device_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    if has_children {
        return Ok(Err(RegistryRefusal::HasSubDevices));
    }
    sqlx::query(
        "DELETE FROM device_group_members \
         WHERE project_id = ? AND instance_id = ? AND device_id = ?",
    )
    .bind(&scope.project_id)
    .bind(&scope.instance_id)
    .bind(device_id)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    sqlx::query("DELETE FROM devices WHERE project_id = ? AND instance_id = ? AND device_id = ?")
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .bind(device_id)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(Ok(()))
}

/// Moves a device from `from` to `to` (guarded by `from`), setting the remembered status.
async fn set_status(
    conn: &mut SqliteConnection,
    scope: &TaskScope,
    device_id: &str,
    from: DeviceStatus,
    to: DeviceStatus,
    before_freeze: Option<DeviceStatus>,
    now: Timestamp,
) -> StoreResult<()> {
    let changed = sqlx::query(
        "UPDATE devices SET status = ?, status_before_freeze = ?, updated_at = ? \
         WHERE project_id = ? AND instance_id = ? AND device_id = ? AND status = ?",
    )
    .bind(to.as_str())
    .bind(before_freeze.map(DeviceStatus::as_str))
    .bind(now.0)
    .bind(&scope.project_id)
    .bind(&scope.instance_id)
    .bind(device_id)
    .bind(from.as_str())
    .execute(conn)
    .await
    .map_err(db)?
    .rows_affected();
    if changed != 1 {
        return Err(corrupt(format!(
            "device {device_id} changed under the write lock"
        )));
    }
    Ok(())
}

async fn freeze(
    conn: &mut SqliteConnection,
    scope: &TaskScope,
    device_id: &str,
    now: Timestamp,
) -> Refusable<()> {
    let Some(device) = load(conn, scope, device_id).await? else {
        return Ok(Err(RegistryRefusal::DeviceNotFound));
    };
    if !device.is_direct() {
        return Ok(Err(RegistryRefusal::SubDeviceFreeze));
    }
    if device.status == DeviceStatus::Frozen {
        return Ok(Err(RegistryRefusal::AlreadyFrozen));
    }
    let from = device.status;
    set_status(
        conn,
        scope,
        device_id,
        from,
        DeviceStatus::Frozen,
        Some(from),
        now,
    )
    .await?;
    Ok(Ok(()))
}

async fn unfreeze(
    conn: &mut SqliteConnection,
    scope: &TaskScope,
    device_id: &str,
    now: Timestamp,
) -> Refusable<()> {
    let Some(device) = load(conn, scope, device_id).await? else {
        return Ok(Err(RegistryRefusal::DeviceNotFound));
    };
    if device.status != DeviceStatus::Frozen {
        return Ok(Err(RegistryRefusal::NotFrozen));
    }
    let back = device
        .status_before_freeze
        .ok_or_else(|| corrupt(format!("frozen device {device_id} has no earlier status")))?;
    set_status(
        conn,
        scope,
        device_id,
        DeviceStatus::Frozen,
        back,
        None,
        now,
    )
    .await?;
    Ok(Ok(()))
}

// ---- the store's device methods ------------------------------------------------------------

/// Applies `effect` in a write transaction of its own and returns the device after it
/// (`None` once deleted).
async fn write(
    store: &SqliteDriver,
    scope: &TaskScope,
    effect: DeviceEffect,
    now: Timestamp,
) -> Refusable<Option<Device>> {
    let mut tx = begin_write(store).await?;
    if let Err(refused) = apply(&mut tx, scope, &effect, now).await? {
        return Ok(Err(refused));
    }
    let device_id = match &effect {
        DeviceEffect::Create(new) => &new.device_id,
        DeviceEffect::Update { device_id, .. }
        | DeviceEffect::Delete { device_id }
        | DeviceEffect::Freeze { device_id }
        | DeviceEffect::Unfreeze { device_id } => device_id,
    };
    let after = load(&mut tx, scope, device_id).await?;
    tx.commit().await.map_err(db)?;
    Ok(Ok(after))
}

fn written(
    after: Result<Option<Device>, RegistryRefusal>,
) -> StoreResult<Result<Device, RegistryRefusal>> {
    match after {
        Ok(Some(d)) => Ok(Ok(d)),
        Ok(None) => Err(corrupt("a written device is gone in its own transaction")),
        Err(r) => Ok(Err(r)),
    }
}

pub(crate) async fn insert(
    store: &SqliteDriver,
    new: NewDevice,
    now: Timestamp,
) -> Refusable<Device> {
    let scope = new.scope.clone();
    written(write(store, &scope, DeviceEffect::Create(new), now).await?)
}

pub(crate) async fn update(
    store: &SqliteDriver,
    scope: &TaskScope,
    device_id: &str,
    update: DeviceUpdate,
    now: Timestamp,
) -> Refusable<Device> {
    let effect = DeviceEffect::Update {
        device_id: device_id.to_owned(),
        update,
    };
    written(write(store, scope, effect, now).await?)
}

pub(crate) async fn delete(
    store: &SqliteDriver,
    scope: &TaskScope,
    device_id: &str,
    now: Timestamp,
) -> Refusable<()> {
    let effect = DeviceEffect::Delete {
        device_id: device_id.to_owned(),
    };
    Ok(write(store, scope, effect, now).await?.map(drop))
}

pub(crate) async fn set_frozen(
    store: &SqliteDriver,
    scope: &TaskScope,
    device_id: &str,
    frozen: bool,
    now: Timestamp,
) -> Refusable<()> {
    let device_id = device_id.to_owned();
    let effect = if frozen {
        DeviceEffect::Freeze { device_id }
    } else {
        DeviceEffect::Unfreeze { device_id }
    };
    Ok(write(store, scope, effect, now).await?.map(drop))
}

pub(crate) async fn get(
    store: &SqliteDriver,
    scope: &TaskScope,
    device_id: &str,
) -> StoreResult<Option<Device>> {
    let mut conn = store.reader.acquire().await.map_err(db)?;
    load(&mut conn, scope, device_id).await
}

/// Which filters a device listing has, i.e. which statement it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DeviceShape {
    pub product: bool,
    pub node: bool,
    pub name: bool,
    pub app: bool,
    /// `Some(true)`: the sub-devices by `root_id` (a cascade below a direct device);
    /// `Some(false)`: by `gateway_id`.
    pub gateway_by_root: Option<bool>,
    pub from: bool,
    pub to: bool,
}

/// The conditions after the scope, in bind order. Only fixed fragments: safe to format.
fn device_conditions(s: DeviceShape) -> String {
    let mut sql = String::new();
    for (on, cond) in [
        (s.product, " AND product_id = ?"),
        (s.node, " AND node_id = ?"),
        (s.name, " AND device_name = ?"),
        (s.app, " AND app_id = ?"),
        (
            s.gateway_by_root == Some(true),
            " AND root_id = ? AND device_id <> ?",
        ),
        (
            s.gateway_by_root == Some(false),
            " AND gateway_id = ? AND device_id <> ?",
        ),
        (s.from, " AND created_at >= ?"),
        (s.to, " AND created_at <= ?"),
    ] {
        if on {
            sql.push_str(cond);
        }
    }
    sql
}

pub(crate) fn device_list_sql(s: DeviceShape) -> String {
    format!(
        concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices WHERE project_id = ? AND instance_id = ? AND id < ?{} \
             ORDER BY id DESC LIMIT ? OFFSET ?"
        ),
        device_conditions(s)
    )
}

pub(crate) fn device_count_sql(s: DeviceShape) -> String {
    format!(
        "SELECT COUNT(*) FROM devices WHERE project_id = ? AND instance_id = ?{}",
        device_conditions(s)
    )
}

pub(crate) async fn list(
    store: &SqliteDriver,
    params: &DeviceListParams,
) -> StoreResult<Page<Device>> {
    let DeviceListParams {
        scope,
        filter: f,
        page,
    } = params;
    let mut tx = begin_read(store).await?;
    // A cascade below a directly connected device is everything under its root; below a
    // first-level sub-device it is its children (there is no third level).
    let gateway_by_root = match &f.gateway {
        None => None,
        Some(g) if g.cascade => Some(
            load_row(&mut tx, scope, &g.gateway_id)
                .await?
                .is_some_and(|gw| gw.level == 0),
        ),
        Some(_) => Some(false),
    };
    let shape = DeviceShape {
        product: f.product_id.is_some(),
        node: f.node_id.is_some(),
        name: f.device_name.is_some(),
        app: f.app_id.is_some(),
        gateway_by_root,
        from: f.created_from.is_some(),
        to: f.created_to.is_some(),
    };
    macro_rules! bind_filters {
        ($q:expr) => {{
            let mut q = $q;
            for v in [&f.product_id, &f.node_id, &f.device_name, &f.app_id]
                .into_iter()
                .flatten()
            {
                q = q.bind(v);
            }
            if let Some(g) = &f.gateway {
                q = q.bind(&g.gateway_id).bind(&g.gateway_id);
            }
            for t in [f.created_from, f.created_to].into_iter().flatten() {
                q = q.bind(t.0);
            }
            q
        }};
    }
    let list_sql = device_list_sql(shape);
    let rows: Vec<DeviceRow> = bind_filters!(
        sqlx::query_as(sqlx::AssertSqlSafe(list_sql.as_str()))
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(page.marker.0)
    )
    .bind(i64::from(page.limit))
    .bind(i64::from(page.offset))
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let count_sql = device_count_sql(shape);
    let count: i64 = bind_filters!(
        sqlx::query_scalar(sqlx::AssertSqlSafe(count_sql.as_str()))
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    let items = rows
        .into_iter()
        .map(DeviceRow::into_device)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page { items, count })
}

// ---- groups ----------------------------------------------------------------------------------

pub(crate) const GROUP_GET_SQL: &str = concat!(
    "SELECT ",
    group_columns!(),
    " FROM device_groups WHERE project_id = ? AND instance_id = ? AND group_id = ?"
);

async fn load_group(
    conn: &mut SqliteConnection,
    scope: &TaskScope,
    group_id: &str,
) -> StoreResult<Option<GroupRow>> {
    sqlx::query_as::<_, GroupRow>(GROUP_GET_SQL)
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .bind(group_id)
        .fetch_optional(conn)
        .await
        .map_err(db)
}

pub(crate) const GROUP_COUNT_SQL: &str =
    "SELECT COUNT(*) FROM device_groups WHERE project_id = ? AND instance_id = ?";
pub(crate) const GROUP_NAME_TAKEN_SQL: &str = "SELECT EXISTS (SELECT 1 FROM device_groups \
     WHERE project_id = ? AND instance_id = ? AND app_id = ? AND name = ?)";
pub(crate) const GROUP_HAS_CHILDREN_SQL: &str = "SELECT EXISTS (SELECT 1 FROM device_groups \
     WHERE project_id = ? AND instance_id = ? AND super_group_id = ?)";
pub(crate) const GROUPS_OF_DEVICE_SQL: &str = "SELECT COUNT(*) FROM device_group_members \
     WHERE project_id = ? AND instance_id = ? AND device_id = ?";
pub(crate) const MEMBERS_OF_GROUP_SQL: &str = "SELECT COUNT(*) FROM device_group_members \
     WHERE project_id = ? AND instance_id = ? AND group_id = ?";
pub(crate) const IS_MEMBER_SQL: &str = "SELECT EXISTS (SELECT 1 FROM device_group_members \
     WHERE project_id = ? AND instance_id = ? AND group_id = ? AND device_id = ?)";
pub(crate) const MEMBER_IDS_SQL: &str = "SELECT device_id FROM device_group_members \
     WHERE project_id = ? AND instance_id = ? AND group_id = ? ORDER BY device_id";

async fn count(
    conn: &mut SqliteConnection,
    sql: &'static str,
    scope: &TaskScope,
    key: Option<&str>,
) -> StoreResult<i64> {
    let mut q = sqlx::query_scalar::<_, i64>(sql)
        .bind(&scope.project_id)
        .bind(&scope.instance_id);
    if let Some(k) = key {
        q = q.bind(k);
    }
    q.fetch_one(conn).await.map_err(db)
}

pub(crate) async fn group_insert(
    store: &SqliteDriver,
    new: NewDeviceGroup,
    now: Timestamp,
) -> Refusable<DeviceGroup> {
    let scope = &new.scope;
    let app = space_key(new.app_id.as_deref());
    let mut tx = begin_write(store).await?;
    if count(&mut tx, GROUP_COUNT_SQL, scope, None).await? >= MAX_GROUPS_PER_SCOPE {
        return Ok(Err(RegistryRefusal::GroupLimit));
    }
    let taken: bool = sqlx::query_scalar(GROUP_NAME_TAKEN_SQL)
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .bind(app)
        .bind(&new.name)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    if taken {
        return Ok(Err(RegistryRefusal::GroupNameExists));
    }
    let depth = match &new.super_group_id {
        None => 1,
        Some(parent) => {
            let Some(parent) = load_group(&mut tx, scope, parent).await? else {
                return Ok(Err(RegistryRefusal::SuperGroupNotFound));
            };
            if parent.depth >= MAX_GROUP_DEPTH {
                return Ok(Err(RegistryRefusal::GroupTooDeep));
            }
            parent.depth + 1
        }
    };
    let id = allocate(&mut tx, now).await?;
    sqlx::query(
        "INSERT INTO device_groups (project_id, instance_id, group_id, id, name, description, \
         super_group_id, depth, app_id, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&scope.project_id)
    .bind(&scope.instance_id)
    .bind(&new.group_id)
    .bind(id.0)
    .bind(&new.name)
    .bind(&new.description)
    .bind(&new.super_group_id)
    .bind(depth)
    .bind(app)
    .bind(now.0)
    .bind(now.0)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(Ok(DeviceGroup {
        id,
        scope: new.scope,
        group_id: new.group_id,
        name: new.name,
        description: new.description,
        super_group_id: new.super_group_id,
        app_id: new.app_id,
        created_at: now,
        updated_at: now,
    }))
}

pub(crate) async fn group_get(
    store: &SqliteDriver,
    scope: &TaskScope,
    group_id: &str,
) -> StoreResult<Option<DeviceGroup>> {
    let mut conn = store.reader.acquire().await.map_err(db)?;
    Ok(load_group(&mut conn, scope, group_id)
        .await?
        .map(Into::into))
}

/// Which filters a group listing has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GroupShape {
    pub app: bool,
    pub name: bool,
    pub modified: bool,
}

fn group_conditions(s: GroupShape) -> String {
    let mut sql = String::new();
    for (on, cond) in [
        (s.app, " AND app_id = ?"),
        (s.name, " AND name = ?"),
        (s.modified, " AND updated_at > ?"),
    ] {
        if on {
            sql.push_str(cond);
        }
    }
    sql
}

pub(crate) fn group_list_sql(s: GroupShape) -> String {
    format!(
        concat!(
            "SELECT ",
            group_columns!(),
            " FROM device_groups WHERE project_id = ? AND instance_id = ? AND id < ?{} \
             ORDER BY id DESC LIMIT ? OFFSET ?"
        ),
        group_conditions(s)
    )
}

pub(crate) fn group_count_sql(s: GroupShape) -> String {
    format!(
        "SELECT COUNT(*) FROM device_groups WHERE project_id = ? AND instance_id = ?{}",
        group_conditions(s)
    )
}

pub(crate) async fn group_list(
    store: &SqliteDriver,
    params: &GroupListParams,
) -> StoreResult<Page<DeviceGroup>> {
    let GroupListParams {
        scope,
        filter: f,
        page,
    } = params;
    let shape = GroupShape {
        app: f.app_id.is_some(),
        name: f.name.is_some(),
        modified: f.modified_after.is_some(),
    };
    macro_rules! bind_filters {
        ($q:expr) => {{
            let mut q = $q;
            for v in [&f.app_id, &f.name].into_iter().flatten() {
                q = q.bind(v);
            }
            if let Some(t) = f.modified_after {
                q = q.bind(t.0);
            }
            q
        }};
    }
    let mut tx = begin_read(store).await?;
    let list_sql = group_list_sql(shape);
    let rows: Vec<GroupRow> = bind_filters!(
        sqlx::query_as(sqlx::AssertSqlSafe(list_sql.as_str()))
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(page.marker.0)
    )
    .bind(i64::from(page.limit))
    .bind(i64::from(page.offset))
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let count_sql = group_count_sql(shape);
    let count: i64 = bind_filters!(
        sqlx::query_scalar(sqlx::AssertSqlSafe(count_sql.as_str()))
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(Page {
        items: rows.into_iter().map(Into::into).collect(),
        count,
    })
}

pub(crate) async fn group_delete(
    store: &SqliteDriver,
    scope: &TaskScope,
    group_id: &str,
) -> Refusable<()> {
    let mut tx = begin_write(store).await?;
    if load_group(&mut tx, scope, group_id).await?.is_none() {
        return Ok(Err(RegistryRefusal::GroupNotFound));
    }
    let has_children: bool = sqlx::query_scalar(GROUP_HAS_CHILDREN_SQL)
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .bind(group_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    if has_children {
        return Ok(Err(RegistryRefusal::GroupHasChildren));
    }
    for sql in [
        "DELETE FROM device_group_members WHERE project_id = ? AND instance_id = ? AND group_id = ?",
        "DELETE FROM device_groups WHERE project_id = ? AND instance_id = ? AND group_id = ?",
    ] {
        sqlx::query(sql)
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(group_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(Ok(()))
}

pub(crate) async fn group_set_member(
    store: &SqliteDriver,
    scope: &TaskScope,
    group_id: &str,
    device_id: &str,
    member: bool,
    now: Timestamp,
) -> Refusable<()> {
    let mut tx = begin_write(store).await?;
    if load_group(&mut tx, scope, group_id).await?.is_none() {
        return Ok(Err(RegistryRefusal::GroupNotFound));
    }
    if load_row(&mut tx, scope, device_id).await?.is_none() {
        return Ok(Err(RegistryRefusal::DeviceNotFound));
    }
    let changed = if member {
        let already: bool = sqlx::query_scalar(IS_MEMBER_SQL)
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(group_id)
            .bind(device_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if already {
            0
        } else {
            if count(&mut tx, GROUPS_OF_DEVICE_SQL, scope, Some(device_id)).await?
                >= MAX_GROUPS_PER_DEVICE
            {
                return Ok(Err(RegistryRefusal::GroupsPerDevice));
            }
            if count(&mut tx, MEMBERS_OF_GROUP_SQL, scope, Some(group_id)).await?
                >= MAX_DEVICES_PER_GROUP
            {
                return Ok(Err(RegistryRefusal::GroupFull));
            }
            sqlx::query(
                "INSERT INTO device_group_members (project_id, instance_id, group_id, device_id) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(group_id)
            .bind(device_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected()
        }
    } else {
        sqlx::query(
            "DELETE FROM device_group_members \
             WHERE project_id = ? AND instance_id = ? AND group_id = ? AND device_id = ?",
        )
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .bind(group_id)
        .bind(device_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
    };
    if changed > 0 {
        sqlx::query(
            "UPDATE device_groups SET updated_at = ? \
             WHERE project_id = ? AND instance_id = ? AND group_id = ?",
        )
        .bind(now.0)
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .bind(group_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(Ok(()))
}

pub(crate) async fn group_members(
    store: &SqliteDriver,
    scope: &TaskScope,
    group_ids: &[String],
) -> StoreResult<Result<Vec<String>, String>> {
    let mut tx = begin_read(store).await?;
    let mut members = BTreeSet::new();
    for group_id in group_ids {
        if load_group(&mut tx, scope, group_id).await?.is_none() {
            return Ok(Err(group_id.clone()));
        }
        // One index range per group, in device-id order; the set merges them.
        let ids: Vec<String> = sqlx::query_scalar(MEMBER_IDS_SQL)
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(group_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        members.extend(ids);
    }
    tx.commit().await.map_err(db)?;
    Ok(Ok(members.into_iter().collect()))
}
