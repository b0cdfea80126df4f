//! The device registry: devices, static groups and their members.
//!
//! [`apply_device_effect`] is the one implementation of each device write (create,
//! update, delete, freeze, unfreeze). It runs inside a transaction its caller owns: the
//! store's own device methods below, and the runner recording a registry sub-task's
//! result, so the effect and the result commit together.
//!
//! Locks, always in this order, so registry writers never deadlock (PostgreSQL; SQLite's
//! write transaction holds the whole database and the row locks are empty):
//! 1. the scope's group key lock (group inserts: the per-scope limit and names);
//! 2. the `registry_id_allocator` row (inserts), held until commit;
//! 3. group rows (`FOR UPDATE`: delete, members; `FOR SHARE`: a child group's insert);
//! 4. device rows (`FOR UPDATE`: delete, freeze, unfreeze, members; `FOR SHARE`: a
//!    sub-device's insert, so its gateway can't be deleted under it).
//!
//! Nothing here takes a task lock, so a runner holding task rows may apply an effect.

use std::collections::BTreeSet;

use taskd_core::device::{
    MAX_DEVICES_PER_GROUP, MAX_GROUP_DEPTH, MAX_GROUPS_PER_DEVICE, MAX_GROUPS_PER_SCOPE,
    MAX_SUB_DEVICE_LEVEL,
};
use taskd_core::{
    AuthType, Device, DeviceGroup, DeviceStatus, DeviceUpdate, Id, NewDevice, NewDeviceGroup,
    SecretType, TaskScope, Timestamp,
};
use taskd_store::{
    DeviceEffect, DeviceEffectRefused, DeviceListParams, GroupListParams, Page, PageRequest,
    RegistryRefusal, SecretReset, StoreResult,
};

use crate::devices::{DeviceRow, GroupRow, space_key};
use crate::driver::{Arg, Conn, Driver, KeyLock, Refusable, Stmt, Tx};
use crate::{corrupt, device_columns, group_columns};

// ---- the effects -------------------------------------------------------------------------

/// Applies one registry effect inside the caller's transaction (never begins, never
/// commits). A refusal has written nothing (except, when a concurrent insert of the same
/// device wins the race, one unused registry id).
pub async fn apply_device_effect<D: Driver>(
    conn: &mut impl Conn,
    scope: &TaskScope,
    effect: &DeviceEffect,
    now: Timestamp,
) -> StoreResult<Result<(), DeviceEffectRefused>> {
    Ok(apply::<D>(conn, scope, effect, now)
        .await?
        .map_err(Into::into))
}

async fn apply<D: Driver>(
    conn: &mut impl Conn,
    scope: &TaskScope,
    effect: &DeviceEffect,
    now: Timestamp,
) -> Refusable<()> {
    match effect {
        DeviceEffect::Create(new) => create::<D>(conn, scope, new, now).await,
        DeviceEffect::Update { device_id, update } => {
            modify(conn, scope, device_id, update, now).await
        }
        DeviceEffect::Delete { device_id } => remove::<D>(conn, scope, device_id).await,
        DeviceEffect::Freeze { device_id } => freeze::<D>(conn, scope, device_id, now).await,
        DeviceEffect::Unfreeze { device_id } => unfreeze::<D>(conn, scope, device_id, now).await,
    }
}

/// One device row, unlocked or locked for update (the device channel's writes).
pub async fn load_row_locked<D: Driver>(
    conn: &mut impl Conn,
    scope: &TaskScope,
    device_id: &str,
) -> StoreResult<Option<DeviceRow>> {
    load_row::<D>(conn, RowLock::Update, scope, device_id).await
}

pub const DEVICE_GET_SQL: &str = concat!(
    "SELECT ",
    device_columns!(),
    " FROM devices WHERE project_id = $1 AND instance_id = $2 AND device_id = $3"
);

/// How a read takes the row it finds.
#[derive(Clone, Copy)]
enum RowLock {
    None,
    Share,
    Update,
}

impl RowLock {
    fn sql<D: Driver>(self, select: &str) -> Stmt<'static> {
        match self {
            RowLock::None => Stmt::assembled(select.to_owned()),
            RowLock::Share => Stmt::assembled(format!("{select}{}", D::FOR_SHARE)),
            RowLock::Update => Stmt::assembled(format!("{select}{}", D::FOR_UPDATE)),
        }
    }
}

async fn load_row<D: Driver>(
    conn: &mut impl Conn,
    lock: RowLock,
    scope: &TaskScope,
    device_id: &str,
) -> StoreResult<Option<DeviceRow>> {
    conn.fetch_optional(
        lock.sql::<D>(DEVICE_GET_SQL)
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(device_id),
    )
    .await
}

async fn load<D: Driver>(
    conn: &mut impl Conn,
    lock: RowLock,
    scope: &TaskScope,
    device_id: &str,
) -> StoreResult<Option<Device>> {
    load_row::<D>(conn, lock, scope, device_id)
        .await?
        .map(DeviceRow::into_device)
        .transpose()
}

/// The next registry id: never below the clock's floor, never below one handed out. The
/// row lock is held until commit, so ids are handed out in commit order.
pub(crate) async fn allocate(conn: &mut impl Conn, now: Timestamp) -> StoreResult<Id> {
    let id = conn
        .fetch_int(
            Stmt::new(
                "UPDATE registry_id_allocator \
                 SET last_id = CASE WHEN last_id + 1 > $1 THEN last_id + 1 ELSE $1 END \
                 WHERE singleton = 0 RETURNING last_id",
            )
            .bind(Id::floor_at(now.0).0),
        )
        .await?;
    Ok(Id(id))
}

async fn create<D: Driver>(
    conn: &mut impl Conn,
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
    if load_row::<D>(conn, RowLock::None, scope, &new.device_id)
        .await?
        .is_some()
    {
        return Ok(Err(RegistryRefusal::DeviceExists));
    }
    // Refusals are decided before the allocator is taken, so a refused effect writes
    // nothing; the gateway is checked again under its lock after it.
    if let Some(g) = &new.gateway_id {
        match load_row::<D>(conn, RowLock::None, scope, g).await? {
            None => return Ok(Err(RegistryRefusal::GatewayNotFound)),
            Some(gw) if gw.level >= MAX_SUB_DEVICE_LEVEL => {
                return Ok(Err(RegistryRefusal::GatewayTooDeep));
            }
            Some(_) => {}
        }
    }
    let id = allocate(conn, now).await?;
    let (gateway_id, root_id, level) = match &new.gateway_id {
        None => (new.device_id.clone(), new.device_id.clone(), 0),
        Some(g) => {
            // Deleted since the check above (a rare race): refused, one id unused.
            let Some(gw) = load_row::<D>(conn, RowLock::Share, scope, g).await? else {
                return Ok(Err(RegistryRefusal::GatewayNotFound));
            };
            (g.clone(), gw.root_id.clone(), gw.level + 1)
        }
    };
    // Another node may have inserted the same device since the check above.
    let inserted = conn
        .execute(
            Stmt::new(
                "INSERT INTO devices (project_id, instance_id, device_id, id, node_id, \
                 product_id, device_name, description, gateway_id, root_id, level, app_id, \
                 auth_type, secret, fingerprint, secure_access, timeout, extension_info_json, \
                 status, status_before_freeze, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                 $17, $18, $19, NULL, $20, $20) ON CONFLICT DO NOTHING",
            )
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(&new.device_id)
            .bind(id.0)
            .bind(&new.node_id)
            .bind(&new.product_id)
            .bind(&new.device_name)
            .bind(&new.description)
            .bind(&gateway_id)
            .bind(&root_id)
            .bind(level)
            .bind(space_key(new.app_id.as_deref()))
            .bind(new.auth_type.as_str())
            .bind(&new.secret)
            .bind(&new.fingerprint)
            .bind(new.secure_access)
            .bind(i64::from(new.timeout))
            .bind(&new.extension_info_json)
            .bind(DeviceStatus::Inactive.as_str())
            .bind(now.0),
        )
        .await?;
    Ok(if inserted == 1 {
        Ok(())
    } else {
        Err(RegistryRefusal::DeviceExists)
    })
}

async fn modify(
    conn: &mut impl Conn,
    scope: &TaskScope,
    device_id: &str,
    update: &DeviceUpdate,
    now: Timestamp,
) -> Refusable<()> {
    let changed = conn
        .execute(
            Stmt::new(
                "UPDATE devices SET device_name = COALESCE($1, device_name), \
                 description = COALESCE($2, description), \
                 extension_info_json = COALESCE($3, extension_info_json), \
                 secure_access = COALESCE($4, secure_access), timeout = COALESCE($5, timeout), \
                 updated_at = $6 WHERE project_id = $7 AND instance_id = $8 AND device_id = $9",
            )
            .bind(&update.device_name)
            .bind(&update.description)
            .bind(&update.extension_info_json)
            .bind(Arg::OptBool(update.secure_access))
            .bind(update.timeout.map(i64::from))
            .bind(now.0)
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(device_id),
        )
        .await?;
    Ok(if changed == 1 {
        Ok(())
    } else {
        Err(RegistryRefusal::DeviceNotFound)
    })
}

pub const HAS_SUB_DEVICES_SQL: &str = "SELECT EXISTS (SELECT 1 FROM devices \
     WHERE project_id = $1 AND instance_id = $2 AND gateway_id = $3 AND device_id <> $3)";

async fn remove<D: Driver>(
    conn: &mut impl Conn,
    scope: &TaskScope,
    device_id: &str,
) -> Refusable<()> {
    // Locked: a sub-device insert holds its gateway `FOR SHARE` until it commits, so the
    // check below sees every child.
    if load_row::<D>(conn, RowLock::Update, scope, device_id)
        .await?
        .is_none()
    {
        return Ok(Err(RegistryRefusal::DeviceNotFound));
    }
    let (has_children,): (bool,) = conn
        .fetch_one(
            Stmt::new(HAS_SUB_DEVICES_SQL)
                .bind(&scope.project_id)
                .bind(&scope.instance_id)
                .bind(device_id),
        )
        .await?;
    if has_children {
        return Ok(Err(RegistryRefusal::HasSubDevices));
    }
    // What the device channel keeps of the device goes with it (its connection, if any,
    // is closed by its node when the channel finds the device gone).
    for sql in [
        "DELETE FROM device_group_members \
         WHERE project_id = $1 AND instance_id = $2 AND device_id = $3",
        "DELETE FROM device_sessions \
         WHERE project_id = $1 AND instance_id = $2 AND device_id = $3",
        "DELETE FROM device_shadows \
         WHERE project_id = $1 AND instance_id = $2 AND device_id = $3",
        "DELETE FROM device_messages \
         WHERE project_id = $1 AND instance_id = $2 AND device_id = $3",
        "DELETE FROM devices WHERE project_id = $1 AND instance_id = $2 AND device_id = $3",
    ] {
        conn.execute(
            Stmt::new(sql)
                .bind(&scope.project_id)
                .bind(&scope.instance_id)
                .bind(device_id),
        )
        .await?;
    }
    Ok(Ok(()))
}

/// Moves a locked device from `from` to `to` (guarded by `from`).
async fn set_status(
    conn: &mut impl Conn,
    scope: &TaskScope,
    device_id: &str,
    from: DeviceStatus,
    to: DeviceStatus,
    before_freeze: Option<DeviceStatus>,
    now: Timestamp,
) -> StoreResult<()> {
    let changed = conn
        .execute(
            Stmt::new(
                "UPDATE devices SET status = $1, status_before_freeze = $2, updated_at = $3 \
                 WHERE project_id = $4 AND instance_id = $5 AND device_id = $6 AND status = $7",
            )
            .bind(to.as_str())
            .bind(before_freeze.map(DeviceStatus::as_str))
            .bind(now.0)
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(device_id)
            .bind(from.as_str()),
        )
        .await?;
    if changed != 1 {
        return Err(corrupt(format!(
            "device {device_id} changed under its lock"
        )));
    }
    Ok(())
}

async fn freeze<D: Driver>(
    conn: &mut impl Conn,
    scope: &TaskScope,
    device_id: &str,
    now: Timestamp,
) -> Refusable<()> {
    let Some(device) = load::<D>(conn, RowLock::Update, scope, device_id).await? else {
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

async fn unfreeze<D: Driver>(
    conn: &mut impl Conn,
    scope: &TaskScope,
    device_id: &str,
    now: Timestamp,
) -> Refusable<()> {
    let Some(device) = load::<D>(conn, RowLock::Update, scope, device_id).await? else {
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
async fn write<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    effect: DeviceEffect,
    now: Timestamp,
) -> Refusable<Option<Device>> {
    let mut tx = driver.begin_write().await?;
    if let Err(refused) = apply::<D>(&mut tx, scope, &effect, now).await? {
        return tx.give_up(Err(refused)).await;
    }
    let device_id = match &effect {
        DeviceEffect::Create(new) => &new.device_id,
        DeviceEffect::Update { device_id, .. }
        | DeviceEffect::Delete { device_id }
        | DeviceEffect::Freeze { device_id }
        | DeviceEffect::Unfreeze { device_id } => device_id,
    };
    let after = load::<D>(&mut tx, RowLock::None, scope, device_id).await?;
    tx.commit().await?;
    Ok(Ok(after))
}

fn written(after: Result<Option<Device>, RegistryRefusal>) -> Refusable<Device> {
    match after {
        Ok(Some(d)) => Ok(Ok(d)),
        Ok(None) => Err(corrupt("a written device is gone in its own transaction")),
        Err(r) => Ok(Err(r)),
    }
}

pub async fn insert<D: Driver>(driver: &D, new: NewDevice, now: Timestamp) -> Refusable<Device> {
    let scope = new.scope.clone();
    written(write(driver, &scope, DeviceEffect::Create(new), now).await?)
}

pub async fn update<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    device_id: &str,
    update: DeviceUpdate,
    now: Timestamp,
) -> Refusable<Device> {
    let effect = DeviceEffect::Update {
        device_id: device_id.to_owned(),
        update,
    };
    written(write(driver, scope, effect, now).await?)
}

pub async fn delete<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    device_id: &str,
    now: Timestamp,
) -> Refusable<()> {
    let effect = DeviceEffect::Delete {
        device_id: device_id.to_owned(),
    };
    Ok(write(driver, scope, effect, now).await?.map(drop))
}

pub async fn set_frozen<D: Driver>(
    driver: &D,
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
    Ok(write(driver, scope, effect, now).await?.map(drop))
}

/// Sets the primary or the secondary secret of a device that authenticates with one.
pub async fn reset_secret<D: Driver>(
    driver: &D,
    reset: &SecretReset,
    now: Timestamp,
) -> Refusable<()> {
    let mut tx = driver.begin_write().await?;
    let Some(device) = load::<D>(&mut tx, RowLock::Update, &reset.scope, &reset.device_id).await?
    else {
        return tx.give_up(Err(RegistryRefusal::DeviceNotFound)).await;
    };
    if device.auth_type != AuthType::Secret {
        return tx.give_up(Err(RegistryRefusal::NotSecretAuth)).await;
    }
    // Only fixed column names: safe to format.
    let column = match reset.secret_type {
        SecretType::Primary => "secret",
        SecretType::Secondary => "secondary_secret",
    };
    tx.execute(
        Stmt::assembled(format!(
            "UPDATE devices SET {column} = $1, updated_at = $2 \
             WHERE project_id = $3 AND instance_id = $4 AND device_id = $5"
        ))
        .bind(&reset.secret)
        .bind(now.0)
        .bind(&reset.scope.project_id)
        .bind(&reset.scope.instance_id)
        .bind(&reset.device_id),
    )
    .await?;
    tx.commit().await?;
    Ok(Ok(()))
}

pub async fn get<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    device_id: &str,
) -> StoreResult<Option<Device>> {
    load::<D>(&mut driver.read().await?, RowLock::None, scope, device_id).await
}

/// Which filters a device listing has, i.e. which statement it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceShape {
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

/// The conditions after the scope (and marker), numbered from `$first`, in bind order.
/// Only fixed fragments and numbers: safe to format.
fn device_conditions(s: DeviceShape, first: usize) -> String {
    let mut n = first;
    let mut sql = String::new();
    for (on, column) in [
        (s.product, "product_id"),
        (s.node, "node_id"),
        (s.name, "device_name"),
        (s.app, "app_id"),
    ] {
        if on {
            sql.push_str(&format!(" AND {column} = ${n}"));
            n += 1;
        }
    }
    if let Some(by_root) = s.gateway_by_root {
        let column = if by_root { "root_id" } else { "gateway_id" };
        sql.push_str(&format!(" AND {column} = ${n} AND device_id <> ${n}"));
        n += 1;
    }
    for (on, op) in [(s.from, ">="), (s.to, "<=")] {
        if on {
            sql.push_str(&format!(" AND created_at {op} ${n}"));
            n += 1;
        }
    }
    sql
}

fn device_filter_count(s: DeviceShape) -> usize {
    [
        s.product,
        s.node,
        s.name,
        s.app,
        s.gateway_by_root.is_some(),
        s.from,
        s.to,
    ]
    .into_iter()
    .filter(|b| *b)
    .count()
}

/// `$1` project, `$2` instance, `$3` marker, the filters, then limit and offset.
pub fn device_list_sql(s: DeviceShape) -> String {
    let n = 4 + device_filter_count(s);
    format!(
        concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices WHERE project_id = $1 AND instance_id = $2 AND id < $3{} \
             ORDER BY id DESC LIMIT ${} OFFSET ${}"
        ),
        device_conditions(s, 4),
        n,
        n + 1
    )
}

pub fn device_count_sql(s: DeviceShape) -> String {
    format!(
        "SELECT COUNT(*) FROM devices WHERE project_id = $1 AND instance_id = $2{}",
        device_conditions(s, 3)
    )
}

pub async fn list<D: Driver>(driver: &D, params: &DeviceListParams) -> StoreResult<Page<Device>> {
    let DeviceListParams {
        scope,
        filter: f,
        page,
    } = params;
    let mut tx = driver.begin_read().await?;
    // A cascade below a directly connected device is everything under its root; below a
    // first-level sub-device it is its children (there is no third level).
    let gateway_by_root = match &f.gateway {
        None => None,
        Some(g) if g.cascade => Some(
            load_row::<D>(&mut tx, RowLock::None, scope, &g.gateway_id)
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
    let mut filters: Vec<Arg<'_>> = [&f.product_id, &f.node_id, &f.device_name, &f.app_id]
        .into_iter()
        .flatten()
        .map(|v| Arg::Text(v))
        .collect();
    if let Some(g) = &f.gateway {
        filters.push(Arg::Text(&g.gateway_id));
    }
    filters.extend(
        [f.created_from, f.created_to]
            .into_iter()
            .flatten()
            .map(|t| Arg::Int(t.0)),
    );
    let (page_stmt, count_stmt) = page_and_count(
        device_list_sql(shape),
        device_count_sql(shape),
        scope,
        page,
        &filters,
    );
    let rows: Vec<DeviceRow> = tx.fetch_all(page_stmt).await?;
    let count = tx.fetch_int(count_stmt).await?;
    tx.commit().await?;
    let items = rows
        .into_iter()
        .map(DeviceRow::into_device)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page { items, count })
}

/// A scoped listing's page and count statements: the scope, (the page's marker,) the
/// filters in the order their conditions were numbered, (then the page's limit and
/// offset), as `device_list_sql`/`group_list_sql` (and `ota::package_list_sql`) and their
/// counts number them.
pub(crate) fn page_and_count<'a>(
    list_sql: String,
    count_sql: String,
    scope: &'a TaskScope,
    page: &PageRequest,
    filters: &[Arg<'a>],
) -> (Stmt<'a>, Stmt<'a>) {
    let with_filters = |stmt: Stmt<'a>| filters.iter().fold(stmt, |stmt, arg| stmt.bind(*arg));
    let page_stmt = with_filters(
        Stmt::assembled(list_sql)
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(page.marker.0),
    )
    .bind(i64::from(page.limit))
    .bind(i64::from(page.offset));
    let count_stmt = with_filters(
        Stmt::assembled(count_sql)
            .bind(&scope.project_id)
            .bind(&scope.instance_id),
    );
    (page_stmt, count_stmt)
}

// ---- groups ----------------------------------------------------------------------------------

pub const GROUP_GET_SQL: &str = concat!(
    "SELECT ",
    group_columns!(),
    " FROM device_groups WHERE project_id = $1 AND instance_id = $2 AND group_id = $3"
);

async fn load_group<D: Driver>(
    conn: &mut impl Conn,
    lock: RowLock,
    scope: &TaskScope,
    group_id: &str,
) -> StoreResult<Option<GroupRow>> {
    conn.fetch_optional(
        lock.sql::<D>(GROUP_GET_SQL)
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(group_id),
    )
    .await
}

pub const GROUP_COUNT_SQL: &str =
    "SELECT COUNT(*) FROM device_groups WHERE project_id = $1 AND instance_id = $2";
pub const GROUP_NAME_TAKEN_SQL: &str = "SELECT EXISTS (SELECT 1 FROM device_groups \
     WHERE project_id = $1 AND instance_id = $2 AND app_id = $3 AND name = $4)";
pub const GROUP_HAS_CHILDREN_SQL: &str = "SELECT EXISTS (SELECT 1 FROM device_groups \
     WHERE project_id = $1 AND instance_id = $2 AND super_group_id = $3)";
pub const GROUPS_OF_DEVICE_SQL: &str = "SELECT COUNT(*) FROM device_group_members \
     WHERE project_id = $1 AND instance_id = $2 AND device_id = $3";
pub const MEMBERS_OF_GROUP_SQL: &str = "SELECT COUNT(*) FROM device_group_members \
     WHERE project_id = $1 AND instance_id = $2 AND group_id = $3";
pub const MEMBER_IDS_SQL: &str = "SELECT device_id FROM device_group_members \
     WHERE project_id = $1 AND instance_id = $2 AND group_id = $3 ORDER BY device_id";
pub const IS_MEMBER_SQL: &str = "SELECT EXISTS (SELECT 1 FROM device_group_members \
     WHERE project_id = $1 AND instance_id = $2 AND group_id = $3 AND device_id = $4)";

/// The scope and up to two more keys, for the statements above.
fn in_scope<'a>(sql: &'static str, scope: &'a TaskScope, keys: &[&'a str]) -> Stmt<'a> {
    keys.iter().fold(
        Stmt::new(sql)
            .bind(&scope.project_id)
            .bind(&scope.instance_id),
        |stmt, key| stmt.bind(*key),
    )
}

async fn exists(conn: &mut impl Conn, stmt: Stmt<'_>) -> StoreResult<bool> {
    let (found,): (bool,) = conn.fetch_one(stmt).await?;
    Ok(found)
}

pub async fn group_insert<D: Driver>(
    driver: &D,
    new: NewDeviceGroup,
    now: Timestamp,
) -> Refusable<DeviceGroup> {
    let scope = &new.scope;
    let app = space_key(new.app_id.as_deref());
    let mut tx = driver.begin_write().await?;
    // Group inserts in one scope take turns (on every node) until commit: two of them
    // can't both take the last slot or the same name.
    D::lock_key(
        &mut tx,
        KeyLock::Groups,
        &[&scope.project_id, &scope.instance_id],
    )
    .await?;
    if tx.fetch_int(in_scope(GROUP_COUNT_SQL, scope, &[])).await? >= MAX_GROUPS_PER_SCOPE {
        return tx.give_up(Err(RegistryRefusal::GroupLimit)).await;
    }
    if exists(
        &mut tx,
        in_scope(GROUP_NAME_TAKEN_SQL, scope, &[app, &new.name]),
    )
    .await?
    {
        return tx.give_up(Err(RegistryRefusal::GroupNameExists)).await;
    }
    let id = allocate(&mut tx, now).await?;
    let depth = match &new.super_group_id {
        None => 1,
        Some(parent) => {
            // Shared: the parent can't be deleted before this child commits.
            let Some(parent) = load_group::<D>(&mut tx, RowLock::Share, scope, parent).await?
            else {
                return tx.give_up(Err(RegistryRefusal::SuperGroupNotFound)).await;
            };
            if parent.depth >= MAX_GROUP_DEPTH {
                return tx.give_up(Err(RegistryRefusal::GroupTooDeep)).await;
            }
            parent.depth + 1
        }
    };
    tx.execute(
        Stmt::new(
            "INSERT INTO device_groups (project_id, instance_id, group_id, id, name, \
             description, super_group_id, depth, app_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
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
        .bind(now.0),
    )
    .await?;
    tx.commit().await?;
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

pub async fn group_get<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    group_id: &str,
) -> StoreResult<Option<DeviceGroup>> {
    Ok(
        load_group::<D>(&mut driver.read().await?, RowLock::None, scope, group_id)
            .await?
            .map(Into::into),
    )
}

/// Which filters a group listing has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupShape {
    pub app: bool,
    pub name: bool,
    pub modified: bool,
}

fn group_conditions(s: GroupShape, first: usize) -> String {
    let mut n = first;
    let mut sql = String::new();
    for (on, cond) in [
        (s.app, "app_id ="),
        (s.name, "name ="),
        (s.modified, "updated_at >"),
    ] {
        if on {
            sql.push_str(&format!(" AND {cond} ${n}"));
            n += 1;
        }
    }
    sql
}

pub fn group_list_sql(s: GroupShape) -> String {
    let n = 4 + [s.app, s.name, s.modified]
        .into_iter()
        .filter(|b| *b)
        .count();
    format!(
        concat!(
            "SELECT ",
            group_columns!(),
            " FROM device_groups WHERE project_id = $1 AND instance_id = $2 AND id < $3{} \
             ORDER BY id DESC LIMIT ${} OFFSET ${}"
        ),
        group_conditions(s, 4),
        n,
        n + 1
    )
}

pub fn group_count_sql(s: GroupShape) -> String {
    format!(
        "SELECT COUNT(*) FROM device_groups WHERE project_id = $1 AND instance_id = $2{}",
        group_conditions(s, 3)
    )
}

pub async fn group_list<D: Driver>(
    driver: &D,
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
    let mut filters: Vec<Arg<'_>> = [&f.app_id, &f.name]
        .into_iter()
        .flatten()
        .map(|v| Arg::Text(v))
        .collect();
    filters.extend(f.modified_after.map(|t| Arg::Int(t.0)));
    let (page_stmt, count_stmt) = page_and_count(
        group_list_sql(shape),
        group_count_sql(shape),
        scope,
        page,
        &filters,
    );
    let mut tx = driver.begin_read().await?;
    let rows: Vec<GroupRow> = tx.fetch_all(page_stmt).await?;
    let count = tx.fetch_int(count_stmt).await?;
    tx.commit().await?;
    Ok(Page {
        items: rows.into_iter().map(Into::into).collect(),
        count,
    })
}

pub async fn group_delete<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    group_id: &str,
) -> Refusable<()> {
    let mut tx = driver.begin_write().await?;
    // Locked: a child group's insert holds its parent `FOR SHARE` until it commits.
    if load_group::<D>(&mut tx, RowLock::Update, scope, group_id)
        .await?
        .is_none()
    {
        return tx.give_up(Err(RegistryRefusal::GroupNotFound)).await;
    }
    if exists(
        &mut tx,
        in_scope(GROUP_HAS_CHILDREN_SQL, scope, &[group_id]),
    )
    .await?
    {
        return tx.give_up(Err(RegistryRefusal::GroupHasChildren)).await;
    }
    for sql in [
        "DELETE FROM device_group_members \
         WHERE project_id = $1 AND instance_id = $2 AND group_id = $3",
        "DELETE FROM device_groups WHERE project_id = $1 AND instance_id = $2 AND group_id = $3",
    ] {
        tx.execute(in_scope(sql, scope, &[group_id])).await?;
    }
    tx.commit().await?;
    Ok(Ok(()))
}

pub async fn group_set_member<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    group_id: &str,
    device_id: &str,
    member: bool,
    now: Timestamp,
) -> Refusable<()> {
    let mut tx = driver.begin_write().await?;
    // The group's lock makes its member count exact, the device's its group count (and
    // keeps it from being deleted meanwhile).
    if load_group::<D>(&mut tx, RowLock::Update, scope, group_id)
        .await?
        .is_none()
    {
        return tx.give_up(Err(RegistryRefusal::GroupNotFound)).await;
    }
    if load_row::<D>(&mut tx, RowLock::Update, scope, device_id)
        .await?
        .is_none()
    {
        return tx.give_up(Err(RegistryRefusal::DeviceNotFound)).await;
    }
    let changed = if member {
        if exists(
            &mut tx,
            in_scope(IS_MEMBER_SQL, scope, &[group_id, device_id]),
        )
        .await?
        {
            0
        } else {
            if tx
                .fetch_int(in_scope(GROUPS_OF_DEVICE_SQL, scope, &[device_id]))
                .await?
                >= MAX_GROUPS_PER_DEVICE
            {
                return tx.give_up(Err(RegistryRefusal::GroupsPerDevice)).await;
            }
            if tx
                .fetch_int(in_scope(MEMBERS_OF_GROUP_SQL, scope, &[group_id]))
                .await?
                >= MAX_DEVICES_PER_GROUP
            {
                return tx.give_up(Err(RegistryRefusal::GroupFull)).await;
            }
            tx.execute(in_scope(
                "INSERT INTO device_group_members (project_id, instance_id, group_id, \
                 device_id) VALUES ($1, $2, $3, $4)",
                scope,
                &[group_id, device_id],
            ))
            .await?
        }
    } else {
        tx.execute(in_scope(
            "DELETE FROM device_group_members \
             WHERE project_id = $1 AND instance_id = $2 AND group_id = $3 AND device_id = $4",
            scope,
            &[group_id, device_id],
        ))
        .await?
    };
    if changed > 0 {
        tx.execute(
            Stmt::new(
                "UPDATE device_groups SET updated_at = $1 \
                 WHERE project_id = $2 AND instance_id = $3 AND group_id = $4",
            )
            .bind(now.0)
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(group_id),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Ok(()))
}

pub async fn group_members<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    group_ids: &[String],
) -> StoreResult<Result<Vec<String>, String>> {
    let mut tx = driver.begin_read().await?;
    let mut members = BTreeSet::new();
    for group_id in group_ids {
        if load_group::<D>(&mut tx, RowLock::None, scope, group_id)
            .await?
            .is_none()
        {
            return tx.give_up(Err(group_id.clone())).await;
        }
        // One index range per group, in device-id order (byte order, as the set's); the
        // set merges them.
        let ids: Vec<(String,)> = tx
            .fetch_all(in_scope(MEMBER_IDS_SQL, scope, &[group_id]))
            .await?;
        members.extend(ids.into_iter().map(|(id,)| id));
    }
    tx.commit().await?;
    Ok(Ok(members.into_iter().collect()))
}
