//! The device channel (MQTT): who may connect, which node holds each connection, the
//! versions devices report, shadows, and the platform-to-device messages.
//!
//! Locks, in the registry's order (`registry`): a message insert takes the
//! `registry_id_allocator` row first; every write here then locks the device row
//! (`FOR UPDATE`) before it touches the device's session, shadow or message rows. The registry's device writes lock the same
//! row before they change or delete it, so a device deleted meanwhile is seen as gone,
//! never half-deleted, and two writes of one device's shadow or messages take turns
//! (the JSON merges are read-modify-write in Rust).

use serde_json::{Map, Value};
use taskd_core::{AuthType, DeviceStatus, Id, TaskScope, Timestamp};
use taskd_store::{
    DesiredUpdate, DeviceLogin, DeviceMessage, DeviceSession, DeviceVersions,
    MAX_MESSAGES_PER_DEVICE, MAX_PENDING_MESSAGES_PER_DEVICE, MAX_SERVICE_ID_CHARS,
    MAX_SHADOW_SECTION_BYTES, MAX_SHADOW_SERVICES, MAX_VERSION_CHARS, MessageRefusal,
    MessageStatus, NewDeviceMessage, ReportedProperties, SessionRefusal, ShadowRefusal,
    ShadowService, StoreResult,
};

use crate::corrupt;
use crate::driver::{Conn, Driver, Stmt, Tx};
use crate::registry::{allocate, load_row_locked};

macro_rules! message_columns {
    () => {
        "id, project_id, instance_id, device_id, message_id, name, message_json, encoding, \
         payload_format, topic, topic_full_name, properties_json, status, error_code, \
         error_msg, created_at, finished_at, expires_at"
    };
}

// ---- statements (pub: the SQLite backend checks their query plans) ----------------------

/// Every device with the id `$1`, in any scope (index `devices_device_id`).
pub const LOGINS_SQL: &str = "SELECT project_id, instance_id, device_id, gateway_id, auth_type, \
     secret, secondary_secret, secure_access, status FROM devices WHERE device_id = $1 \
     ORDER BY project_id, instance_id";

/// The sessions node `$1` holds (index `device_sessions_node`).
pub const SESSIONS_OF_NODE_SQL: &str = "SELECT project_id, instance_id, device_id, session_id, \
     node_id, connected_at FROM device_sessions WHERE node_id = $1 \
     ORDER BY project_id, instance_id, device_id";

/// How many pending messages a device has.
pub const PENDING_COUNT_SQL: &str = "SELECT COUNT(*) FROM device_messages \
     WHERE project_id = $1 AND instance_id = $2 AND device_id = $3 AND status = 'PENDING'";

/// How many messages a device has.
pub const MESSAGE_COUNT_SQL: &str = "SELECT COUNT(*) FROM device_messages \
     WHERE project_id = $1 AND instance_id = $2 AND device_id = $3";

/// Deletes a device's `$4` oldest final messages.
pub const PURGE_SQL: &str = "DELETE FROM device_messages WHERE id IN ( \
     SELECT id FROM device_messages \
     WHERE project_id = $1 AND instance_id = $2 AND device_id = $3 \
     AND status <> 'PENDING' ORDER BY id LIMIT $4)";

/// A device's newest `$4` messages.
pub const MESSAGE_LIST_SQL: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM device_messages \
     WHERE project_id = $1 AND instance_id = $2 AND device_id = $3 \
     ORDER BY id DESC LIMIT $4"
);

/// A device's oldest `$5` pending messages unexpired at `$4`.
pub const MESSAGES_PENDING_SQL: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM device_messages \
     WHERE project_id = $1 AND instance_id = $2 AND device_id = $3 \
     AND status = 'PENDING' AND (expires_at IS NULL OR expires_at > $4) \
     ORDER BY id LIMIT $5"
);

/// Times out up to `$2` pending messages expired at `$1` (index `device_messages_expiry`).
pub const EXPIRE_SQL: &str = "UPDATE device_messages SET status = 'TIMEOUT', finished_at = $1 \
     WHERE status = 'PENDING' AND id IN ( \
     SELECT id FROM device_messages \
     WHERE status = 'PENDING' AND expires_at IS NOT NULL AND expires_at <= $1 \
     ORDER BY expires_at LIMIT $2)";

/// The earliest expiry of a pending message.
pub const NEXT_EXPIRY_SQL: &str = "SELECT MIN(expires_at) FROM device_messages \
     WHERE status = 'PENDING' AND expires_at IS NOT NULL";

// ---- logins and sessions -------------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct LoginRow {
    project_id: String,
    instance_id: String,
    device_id: String,
    gateway_id: String,
    auth_type: String,
    secret: Option<String>,
    secondary_secret: Option<String>,
    secure_access: bool,
    status: String,
}

fn parse_status(device_id: &str, s: &str) -> StoreResult<DeviceStatus> {
    DeviceStatus::parse(s).ok_or_else(|| corrupt(format!("device {device_id}: status {s:?}")))
}

pub async fn device_logins<D: Driver>(
    driver: &D,
    device_id: &str,
) -> StoreResult<Vec<DeviceLogin>> {
    let rows: Vec<LoginRow> = driver
        .read()
        .await?
        .fetch_all(Stmt::new(LOGINS_SQL).bind(device_id))
        .await?;
    rows.into_iter()
        .map(|r| {
            Ok(DeviceLogin {
                auth_type: AuthType::parse(&r.auth_type).ok_or_else(|| {
                    corrupt(format!(
                        "device {}: auth type {:?}",
                        r.device_id, r.auth_type
                    ))
                })?,
                status: parse_status(&r.device_id, &r.status)?,
                is_direct: r.gateway_id == r.device_id,
                scope: TaskScope::new(r.project_id, r.instance_id),
                device_id: r.device_id,
                secret: r.secret,
                secondary_secret: r.secondary_secret,
                secure_access: r.secure_access,
            })
        })
        .collect()
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    project_id: String,
    instance_id: String,
    device_id: String,
    session_id: String,
    node_id: String,
    connected_at: i64,
}

impl From<SessionRow> for DeviceSession {
    fn from(r: SessionRow) -> DeviceSession {
        DeviceSession {
            scope: TaskScope::new(r.project_id, r.instance_id),
            device_id: r.device_id,
            session_id: r.session_id,
            node_id: r.node_id,
            connected_at: Timestamp(r.connected_at),
        }
    }
}

pub const SESSION_GET_SQL: &str = "SELECT project_id, instance_id, device_id, session_id, node_id, \
     connected_at FROM device_sessions \
     WHERE project_id = $1 AND instance_id = $2 AND device_id = $3";

async fn session_row(
    conn: &mut impl Conn,
    scope: &TaskScope,
    device_id: &str,
) -> StoreResult<Option<DeviceSession>> {
    let row: Option<SessionRow> = conn
        .fetch_optional(
            Stmt::new(SESSION_GET_SQL)
                .bind(&scope.project_id)
                .bind(&scope.instance_id)
                .bind(device_id),
        )
        .await?;
    Ok(row.map(Into::into))
}

pub async fn session_open<D: Driver>(
    driver: &D,
    s: &DeviceSession,
) -> StoreResult<Result<Option<DeviceSession>, SessionRefusal>> {
    let mut tx = driver.begin_write().await?;
    let opened = open_locked::<D>(&mut tx, s).await?;
    if opened.is_err() {
        return tx.give_up(opened).await;
    }
    tx.commit().await?;
    Ok(opened)
}

/// Several [`session_open`]s in one transaction (a connect storm: one commit for many
/// CONNECTs). The devices are locked in (scope, device) order, the order every multi-row
/// session write here takes, so that two nodes' batches never deadlock; results come back
/// in the given order.
pub async fn sessions_open<D: Driver>(
    driver: &D,
    sessions: &[DeviceSession],
) -> StoreResult<Vec<Result<Option<DeviceSession>, SessionRefusal>>> {
    let mut order: Vec<usize> = (0..sessions.len()).collect();
    // Stable: two connections of one device in a batch open in the order they came.
    order.sort_by(|&a, &b| {
        let (x, y) = (&sessions[a], &sessions[b]);
        (&x.scope.project_id, &x.scope.instance_id, &x.device_id).cmp(&(
            &y.scope.project_id,
            &y.scope.instance_id,
            &y.device_id,
        ))
    });
    let mut results = vec![Err(SessionRefusal::DeviceNotFound); sessions.len()];
    let mut tx = driver.begin_write().await?;
    for i in order {
        results[i] = open_locked::<D>(&mut tx, &sessions[i]).await?;
    }
    tx.commit().await?;
    Ok(results)
}

/// Opens one session in `tx`: locks the device row, refuses a missing or frozen device
/// (writing nothing), else records the session and ONLINE.
async fn open_locked<D: Driver>(
    tx: &mut D::Tx,
    s: &DeviceSession,
) -> StoreResult<Result<Option<DeviceSession>, SessionRefusal>> {
    let Some(row) = load_row_locked::<D>(tx, &s.scope, &s.device_id).await? else {
        return Ok(Err(SessionRefusal::DeviceNotFound));
    };
    if row.into_device()?.status == DeviceStatus::Frozen {
        return Ok(Err(SessionRefusal::Frozen));
    }
    let older = session_row(tx, &s.scope, &s.device_id).await?;
    tx.execute(
        Stmt::new(
            "INSERT INTO device_sessions (project_id, instance_id, device_id, session_id, \
             node_id, connected_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (project_id, instance_id, device_id) DO UPDATE SET \
             session_id = excluded.session_id, node_id = excluded.node_id, \
             connected_at = excluded.connected_at",
        )
        .bind(&s.scope.project_id)
        .bind(&s.scope.instance_id)
        .bind(&s.device_id)
        .bind(&s.session_id)
        .bind(&s.node_id)
        .bind(s.connected_at.0),
    )
    .await?;
    tx.execute(
        Stmt::new(
            "UPDATE devices SET status = $1, active_time = COALESCE(active_time, $2), \
             connection_status_update_time = $2 \
             WHERE project_id = $3 AND instance_id = $4 AND device_id = $5",
        )
        .bind(DeviceStatus::Online.as_str())
        .bind(s.connected_at.0)
        .bind(&s.scope.project_id)
        .bind(&s.scope.instance_id)
        .bind(&s.device_id),
    )
    .await?;
    // The same connection opened again replaced nothing.
    Ok(Ok(older.filter(|o| o.session_id != s.session_id)))
}

/// Closes the session `session_id` of a device whose row `tx` holds locked: deletes it
/// and marks the device OFFLINE (a frozen one keeps FROZEN and returns to OFFLINE when
/// unfrozen). False when the device's session is another one (or none).
async fn close_locked(
    tx: &mut impl Conn,
    scope: &TaskScope,
    device_id: &str,
    session_id: &str,
    now: Timestamp,
) -> StoreResult<bool> {
    let deleted = tx
        .execute(
            Stmt::new(
                "DELETE FROM device_sessions \
                 WHERE project_id = $1 AND instance_id = $2 AND device_id = $3 \
                 AND session_id = $4",
            )
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(device_id)
            .bind(session_id),
        )
        .await?;
    if deleted == 0 {
        return Ok(false);
    }
    tx.execute(
        Stmt::new(
            "UPDATE devices SET \
             status = CASE WHEN status = 'FROZEN' THEN 'FROZEN' ELSE $1 END, \
             status_before_freeze = CASE WHEN status = 'FROZEN' THEN $1 ELSE NULL END, \
             connection_status_update_time = $2 \
             WHERE project_id = $3 AND instance_id = $4 AND device_id = $5",
        )
        .bind(DeviceStatus::Offline.as_str())
        .bind(now.0)
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .bind(device_id),
    )
    .await?;
    Ok(true)
}

pub async fn session_close<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    device_id: &str,
    session_id: &str,
    now: Timestamp,
) -> StoreResult<bool> {
    let mut tx = driver.begin_write().await?;
    // A deleted device took its session with it.
    if load_row_locked::<D>(&mut tx, scope, device_id)
        .await?
        .is_none()
    {
        return tx.give_up(false).await;
    }
    if !close_locked(&mut tx, scope, device_id, session_id, now).await? {
        return tx.give_up(false).await;
    }
    tx.commit().await?;
    Ok(true)
}

pub async fn session_get<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    device_id: &str,
) -> StoreResult<Option<DeviceSession>> {
    session_row(&mut driver.read().await?, scope, device_id).await
}

pub async fn sessions_close_node<D: Driver>(
    driver: &D,
    node_id: &str,
    now: Timestamp,
) -> StoreResult<u64> {
    let mut tx = driver.begin_write().await?;
    // Read unlocked, then each closed under its device's lock like a single close (the
    // device row first, as everywhere here): a session replaced meanwhile is skipped.
    let rows: Vec<SessionRow> = tx
        .fetch_all(Stmt::new(SESSIONS_OF_NODE_SQL).bind(node_id))
        .await?;
    let mut closed = 0;
    for r in rows {
        let scope = TaskScope::new(r.project_id, r.instance_id);
        if load_row_locked::<D>(&mut tx, &scope, &r.device_id)
            .await?
            .is_some()
            && close_locked(&mut tx, &scope, &r.device_id, &r.session_id, now).await?
        {
            closed += 1;
        }
    }
    tx.commit().await?;
    Ok(closed)
}

/// A reported version cut to [`MAX_VERSION_CHARS`] characters. Cut rather than refused:
/// a device's report has no answer to carry a refusal, and the rest of it (the other
/// versions) is still worth keeping.
fn version(v: &Option<String>) -> Option<&str> {
    v.as_deref()
        .map(|s| match s.char_indices().nth(MAX_VERSION_CHARS) {
            Some((end, _)) => &s[..end],
            None => s,
        })
}

pub async fn versions_put<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    device_id: &str,
    v: &DeviceVersions,
) -> StoreResult<bool> {
    let changed = driver
        .write_one(
            Stmt::new(
                "UPDATE devices SET fw_version = COALESCE($1, fw_version), \
                 sw_version = COALESCE($2, sw_version), \
                 device_sdk_version = COALESCE($3, device_sdk_version) \
                 WHERE project_id = $4 AND instance_id = $5 AND device_id = $6",
            )
            .bind(version(&v.fw_version))
            .bind(version(&v.sw_version))
            .bind(version(&v.device_sdk_version))
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(device_id),
        )
        .await?;
    Ok(changed == 1)
}

// ---- shadows ---------------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct ShadowRow {
    service_id: String,
    desired_json: String,
    desired_event_time: Option<i64>,
    reported_json: String,
    reported_event_time: Option<i64>,
    version: i64,
}

impl From<ShadowRow> for ShadowService {
    fn from(r: ShadowRow) -> ShadowService {
        ShadowService {
            service_id: r.service_id,
            desired_json: r.desired_json,
            desired_event_time: r.desired_event_time.map(Timestamp),
            reported_json: r.reported_json,
            reported_event_time: r.reported_event_time.map(Timestamp),
            version: r.version,
        }
    }
}

async fn shadow_rows(
    conn: &mut impl Conn,
    scope: &TaskScope,
    device_id: &str,
) -> StoreResult<Vec<ShadowService>> {
    let rows: Vec<ShadowRow> = conn
        .fetch_all(
            Stmt::new(
                "SELECT service_id, desired_json, desired_event_time, reported_json, \
                 reported_event_time, version FROM device_shadows \
                 WHERE project_id = $1 AND instance_id = $2 AND device_id = $3 \
                 ORDER BY service_id",
            )
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(device_id),
        )
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub async fn shadow_get<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    device_id: &str,
) -> StoreResult<Option<Vec<ShadowService>>> {
    // One snapshot: the device and its shadow rows as of the same moment.
    let mut tx = driver.begin_read().await?;
    let exists: Option<(i64,)> = tx
        .fetch_optional(
            Stmt::new(
                "SELECT id FROM devices \
                 WHERE project_id = $1 AND instance_id = $2 AND device_id = $3",
            )
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(device_id),
        )
        .await?;
    let shadow = match exists {
        None => None,
        Some(_) => Some(shadow_rows(&mut tx, scope, device_id).await?),
    };
    tx.rollback().await?;
    Ok(shadow)
}

fn parse_object(text: &str) -> Result<Map<String, Value>, ShadowRefusal> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ShadowRefusal::NotAnObject),
    }
}

fn stored_object(service: &ShadowService, text: &str) -> StoreResult<Map<String, Value>> {
    parse_object(text).map_err(|_| {
        corrupt(format!(
            "shadow service {}: section is no object",
            service.service_id
        ))
    })
}

/// `section` with `patch` merged in: each property set, a JSON `null` removing it.
/// `None` when the result exceeds [`MAX_SHADOW_SECTION_BYTES`].
fn merge(
    mut section: Map<String, Value>,
    patch: Map<String, Value>,
    remove_nulls: bool,
) -> Option<String> {
    for (k, v) in patch {
        if remove_nulls && v.is_null() {
            section.remove(&k);
        } else {
            section.insert(k, v);
        }
    }
    let text = Value::Object(section).to_string();
    (text.len() <= MAX_SHADOW_SECTION_BYTES).then_some(text)
}

fn new_service(service_id: &str) -> ShadowService {
    ShadowService {
        service_id: service_id.to_owned(),
        desired_json: "{}".to_owned(),
        desired_event_time: None,
        reported_json: "{}".to_owned(),
        reported_event_time: None,
        version: 0,
    }
}

/// The shadow's entry for `service_id`, created (at version 0) when new; refused when
/// the id is too long or the shadow would hold too many services.
fn entry<'a>(
    shadow: &'a mut Vec<ShadowService>,
    service_id: &str,
) -> Result<&'a mut ShadowService, ShadowRefusal> {
    if service_id.is_empty() || service_id.chars().count() > MAX_SERVICE_ID_CHARS {
        return Err(ShadowRefusal::TooLarge);
    }
    let at = match shadow.iter().position(|s| s.service_id == service_id) {
        Some(at) => at,
        None => {
            if shadow.len() >= MAX_SHADOW_SERVICES {
                return Err(ShadowRefusal::TooLarge);
            }
            shadow.push(new_service(service_id));
            shadow.len() - 1
        }
    };
    Ok(&mut shadow[at])
}

/// What a shadow write decided: the shadow after it, or why it was refused.
type Decided = Result<Vec<ShadowService>, ShadowRefusal>;

fn apply_desired(
    mut shadow: Vec<ShadowService>,
    updates: Vec<DesiredUpdate>,
    now: Timestamp,
) -> StoreResult<Decided> {
    for u in updates {
        let service = match entry(&mut shadow, &u.service_id) {
            Ok(s) => s,
            Err(r) => return Ok(Err(r)),
        };
        if let Some(expected) = u.expected_version
            && expected != service.version
        {
            return Ok(Err(ShadowRefusal::VersionConflict {
                service_id: u.service_id,
                stored: service.version,
            }));
        }
        let patch = match parse_object(&u.desired_json) {
            Ok(p) => p,
            Err(r) => return Ok(Err(r)),
        };
        // An empty object clears the whole section (IoTDA `UpdateDesired`: "to delete
        // the whole desired, send an empty object").
        let section = if patch.is_empty() {
            Map::new()
        } else {
            stored_object(service, &service.desired_json)?
        };
        let Some(text) = merge(section, patch, true) else {
            return Ok(Err(ShadowRefusal::TooLarge));
        };
        // Every accepted update is a new version of the desired section (IoTDA bumps the
        // version per update, so a client's `version` guard sees each one).
        service.desired_json = text;
        service.desired_event_time = Some(now);
        service.version += 1;
    }
    shadow.sort_by(|a, b| a.service_id.cmp(&b.service_id));
    Ok(Ok(shadow))
}

fn apply_reported(
    mut shadow: Vec<ShadowService>,
    reported: Vec<ReportedProperties>,
    now: Timestamp,
) -> StoreResult<Decided> {
    for r in reported {
        let service = match entry(&mut shadow, &r.service_id) {
            Ok(s) => s,
            Err(refused) => return Ok(Err(refused)),
        };
        let patch = match parse_object(&r.properties_json) {
            Ok(p) => p,
            Err(refused) => return Ok(Err(refused)),
        };
        let section = stored_object(service, &service.reported_json)?;
        // A reported `null` is a value the device reported, not a removal.
        let Some(text) = merge(section, patch, false) else {
            return Ok(Err(ShadowRefusal::TooLarge));
        };
        service.reported_json = text;
        service.reported_event_time = Some(r.event_time.unwrap_or(now));
    }
    shadow.sort_by(|a, b| a.service_id.cmp(&b.service_id));
    Ok(Ok(shadow))
}

/// Locks the device, reads its shadow, decides, and writes every service that changed.
async fn shadow_write<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    device_id: &str,
    decide: impl FnOnce(Vec<ShadowService>) -> StoreResult<Decided> + Send,
) -> StoreResult<Decided> {
    let mut tx = driver.begin_write().await?;
    if load_row_locked::<D>(&mut tx, scope, device_id)
        .await?
        .is_none()
    {
        return tx.give_up(Err(ShadowRefusal::DeviceNotFound)).await;
    }
    let before = shadow_rows(&mut tx, scope, device_id).await?;
    let after = match decide(before.clone())? {
        Ok(after) => after,
        Err(refused) => return tx.give_up(Err(refused)).await,
    };
    for s in after.iter().filter(|s| !before.contains(s)) {
        tx.execute(
            Stmt::new(
                "INSERT INTO device_shadows (project_id, instance_id, device_id, service_id, \
                 desired_json, desired_event_time, reported_json, reported_event_time, \
                 version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (project_id, instance_id, device_id, service_id) DO UPDATE SET \
                 desired_json = excluded.desired_json, \
                 desired_event_time = excluded.desired_event_time, \
                 reported_json = excluded.reported_json, \
                 reported_event_time = excluded.reported_event_time, \
                 version = excluded.version",
            )
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(device_id)
            .bind(&s.service_id)
            .bind(&s.desired_json)
            .bind(s.desired_event_time.map(|t| t.0))
            .bind(&s.reported_json)
            .bind(s.reported_event_time.map(|t| t.0))
            .bind(s.version),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Ok(after))
}

pub async fn shadow_update_desired<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    device_id: &str,
    updates: Vec<DesiredUpdate>,
    now: Timestamp,
) -> StoreResult<Decided> {
    shadow_write(driver, scope, device_id, move |shadow| {
        apply_desired(shadow, updates, now)
    })
    .await
}

pub async fn shadow_report<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    device_id: &str,
    reported: Vec<ReportedProperties>,
    now: Timestamp,
) -> StoreResult<Decided> {
    shadow_write(driver, scope, device_id, move |shadow| {
        apply_reported(shadow, reported, now)
    })
    .await
}

// ---- messages --------------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: i64,
    project_id: String,
    instance_id: String,
    device_id: String,
    message_id: String,
    name: Option<String>,
    message_json: String,
    encoding: String,
    payload_format: String,
    topic: Option<String>,
    topic_full_name: Option<String>,
    properties_json: Option<String>,
    status: String,
    error_code: Option<String>,
    error_msg: Option<String>,
    created_at: i64,
    finished_at: Option<i64>,
    expires_at: Option<i64>,
}

impl MessageRow {
    fn into_message(self) -> StoreResult<DeviceMessage> {
        let status = MessageStatus::parse(&self.status).ok_or_else(|| {
            corrupt(format!(
                "message {}: status {:?}",
                self.message_id, self.status
            ))
        })?;
        let error = match (self.error_code, self.error_msg) {
            (None, None) => None,
            (code, msg) => Some((code.unwrap_or_default(), msg.unwrap_or_default())),
        };
        Ok(DeviceMessage {
            id: Id(self.id),
            message: NewDeviceMessage {
                scope: TaskScope::new(self.project_id, self.instance_id),
                device_id: self.device_id,
                message_id: self.message_id,
                name: self.name,
                message_json: self.message_json,
                encoding: self.encoding,
                payload_format: self.payload_format,
                topic: self.topic,
                topic_full_name: self.topic_full_name,
                properties_json: self.properties_json,
                expires_at: self.expires_at.map(Timestamp),
            },
            status,
            error,
            created_at: Timestamp(self.created_at),
            finished_at: self.finished_at.map(Timestamp),
        })
    }
}

fn messages(rows: Vec<MessageRow>) -> StoreResult<Vec<DeviceMessage>> {
    rows.into_iter().map(MessageRow::into_message).collect()
}

pub const MESSAGE_GET_SQL: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM device_messages \
     WHERE project_id = $1 AND instance_id = $2 AND device_id = $3 AND message_id = $4"
);

async fn message_row(
    conn: &mut impl Conn,
    scope: &TaskScope,
    device_id: &str,
    message_id: &str,
) -> StoreResult<Option<DeviceMessage>> {
    let row: Option<MessageRow> = conn
        .fetch_optional(
            Stmt::new(MESSAGE_GET_SQL)
                .bind(&scope.project_id)
                .bind(&scope.instance_id)
                .bind(device_id)
                .bind(message_id),
        )
        .await?;
    row.map(MessageRow::into_message).transpose()
}

fn device_stmt<'a>(sql: &'static str, scope: &'a TaskScope, device_id: &'a str) -> Stmt<'a> {
    Stmt::new(sql)
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .bind(device_id)
}

pub async fn message_insert<D: Driver>(
    driver: &D,
    m: NewDeviceMessage,
    now: Timestamp,
) -> StoreResult<Result<DeviceMessage, MessageRefusal>> {
    let scope = &m.scope;
    let mut tx = driver.begin_write().await?;
    // The id first: the registry takes the allocator before device rows (a sub-device's
    // insert holds it, then its gateway's row), so taking it after the device's lock could
    // deadlock on PostgreSQL. A refusal rolls the allocation back.
    let id = allocate(&mut tx, now).await?;
    // The device's lock serialises its inserts: the pending count and the purge below
    // see every committed message of the device.
    if load_row_locked::<D>(&mut tx, scope, &m.device_id)
        .await?
        .is_none()
    {
        return tx.give_up(Err(MessageRefusal::DeviceNotFound)).await;
    }
    if message_row(&mut tx, scope, &m.device_id, &m.message_id)
        .await?
        .is_some()
    {
        return tx.give_up(Err(MessageRefusal::DuplicateId)).await;
    }
    let pending = tx
        .fetch_int(device_stmt(PENDING_COUNT_SQL, scope, &m.device_id))
        .await?;
    if pending >= MAX_PENDING_MESSAGES_PER_DEVICE {
        return tx.give_up(Err(MessageRefusal::TooManyPending)).await;
    }
    tx.execute(
        Stmt::new(
            "INSERT INTO device_messages (project_id, instance_id, device_id, message_id, id, \
             name, message_json, encoding, payload_format, topic, topic_full_name, \
             properties_json, status, error_code, error_msg, created_at, finished_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
             'PENDING', NULL, NULL, $13, NULL, $14)",
        )
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .bind(&m.device_id)
        .bind(&m.message_id)
        .bind(id.0)
        .bind(&m.name)
        .bind(&m.message_json)
        .bind(&m.encoding)
        .bind(&m.payload_format)
        .bind(&m.topic)
        .bind(&m.topic_full_name)
        .bind(&m.properties_json)
        .bind(now.0)
        .bind(m.expires_at.map(|t| t.0)),
    )
    .await?;
    // Keep the device's history bounded: the oldest final messages past the limit go.
    let total = tx
        .fetch_int(device_stmt(MESSAGE_COUNT_SQL, scope, &m.device_id))
        .await?;
    if total > MAX_MESSAGES_PER_DEVICE {
        tx.execute(
            device_stmt(PURGE_SQL, scope, &m.device_id).bind(total - MAX_MESSAGES_PER_DEVICE),
        )
        .await?;
    }
    let stored = message_row(&mut tx, scope, &m.device_id, &m.message_id)
        .await?
        .ok_or_else(|| corrupt("an inserted message is gone in its own transaction"))?;
    tx.commit().await?;
    Ok(Ok(stored))
}

pub async fn message_get<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    device_id: &str,
    message_id: &str,
) -> StoreResult<Option<DeviceMessage>> {
    message_row(&mut driver.read().await?, scope, device_id, message_id).await
}

pub async fn message_list<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    device_id: &str,
    limit: u32,
) -> StoreResult<Vec<DeviceMessage>> {
    let rows = driver
        .read()
        .await?
        .fetch_all(device_stmt(MESSAGE_LIST_SQL, scope, device_id).bind(i64::from(limit)))
        .await?;
    messages(rows)
}

pub async fn message_finish<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    device_id: &str,
    message_id: &str,
    status: MessageStatus,
    error: Option<(String, String)>,
    now: Timestamp,
) -> StoreResult<bool> {
    if !status.is_final() {
        return Ok(false);
    }
    let (code, msg) = error.unzip();
    let changed = driver
        .write_one(
            Stmt::new(
                "UPDATE device_messages SET status = $1, error_code = $2, error_msg = $3, \
                 finished_at = $4 \
                 WHERE project_id = $5 AND instance_id = $6 AND device_id = $7 \
                 AND message_id = $8 AND status = 'PENDING'",
            )
            .bind(status.as_str())
            .bind(code.as_deref())
            .bind(msg.as_deref())
            .bind(now.0)
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(device_id)
            .bind(message_id),
        )
        .await?;
    Ok(changed == 1)
}

pub async fn messages_pending<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    device_id: &str,
    now: Timestamp,
    limit: u32,
) -> StoreResult<Vec<DeviceMessage>> {
    let rows = driver
        .read()
        .await?
        .fetch_all(
            device_stmt(MESSAGES_PENDING_SQL, scope, device_id)
                .bind(now.0)
                .bind(i64::from(limit)),
        )
        .await?;
    messages(rows)
}

/// Maintenance: up to `max_rows` pending messages whose `expires_at` came, ended as
/// `Timeout` (each guarded by `PENDING`, so a delivery that won the race stays).
pub async fn messages_expire<D: Driver>(
    driver: &D,
    now: Timestamp,
    max_rows: u32,
) -> StoreResult<u64> {
    driver
        .write_one(Stmt::new(EXPIRE_SQL).bind(now.0).bind(i64::from(max_rows)))
        .await
}

/// The earliest expiry of a pending message (the runner's next maintenance moment).
pub async fn next_expiry<D: Driver>(driver: &D) -> StoreResult<Option<Timestamp>> {
    let (t,): (Option<i64>,) = driver
        .read()
        .await?
        .fetch_one(Stmt::new(NEXT_EXPIRY_SQL))
        .await?;
    Ok(t.map(Timestamp))
}
