//! Projects and API credentials.

use taskd_core::{Credential, Timestamp};
use taskd_store::{StoreError, StoreResult};

use crate::rows::CredentialRow;
use crate::{PgStore, begin_write, db};

const PROJECT_ENSURE_SQL: &str =
    "INSERT INTO projects (project_id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING";

pub(crate) async fn project_ensure(
    store: &PgStore,
    project_id: &str,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(PROJECT_ENSURE_SQL)
        .bind(project_id)
        .bind(now.0)
        .execute(&store.pool)
        .await
        .map_err(db)?;
    Ok(())
}

pub(crate) async fn put(store: &PgStore, c: &Credential) -> StoreResult<()> {
    let mut tx = begin_write(store).await?;
    sqlx::query(PROJECT_ENSURE_SQL)
        .bind(&c.project_id)
        .bind(c.created_at.0)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    // Same project again: new secret, revocation state as given (normally active); the
    // key keeps the time it was first created. Another project's key is left alone (the
    // `WHERE` of `DO UPDATE`), in the same statement, so two nodes registering one key
    // for two projects at once can't both succeed.
    let changed = sqlx::query(
        "INSERT INTO credentials (access_key, secret_key, project_id, created_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (access_key) DO UPDATE \
         SET secret_key = EXCLUDED.secret_key, revoked_at = EXCLUDED.revoked_at \
         WHERE credentials.project_id = EXCLUDED.project_id",
    )
    .bind(&c.access_key)
    .bind(&c.secret_key)
    .bind(&c.project_id)
    .bind(c.created_at.0)
    .bind(c.revoked_at.map(|t| t.0))
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected();
    if changed != 1 {
        // The access key is not echoed: it names another project's credential.
        return Err(StoreError::Conflict(
            "access key belongs to another project".to_owned(),
        ));
    }
    tx.commit().await.map_err(db)?;
    Ok(())
}

pub(crate) async fn get(store: &PgStore, access_key: &str) -> StoreResult<Option<Credential>> {
    let row: Option<CredentialRow> = sqlx::query_as(
        "SELECT access_key, secret_key, project_id, created_at, revoked_at FROM credentials \
         WHERE access_key = $1 AND revoked_at IS NULL",
    )
    .bind(access_key)
    .fetch_optional(&store.pool)
    .await
    .map_err(db)?;
    Ok(row.map(Credential::from))
}

pub(crate) async fn list(store: &PgStore) -> StoreResult<Vec<Credential>> {
    let rows: Vec<CredentialRow> = sqlx::query_as(
        "SELECT access_key, secret_key, project_id, created_at, revoked_at FROM credentials \
         ORDER BY created_at, seq",
    )
    .fetch_all(&store.pool)
    .await
    .map_err(db)?;
    Ok(rows.into_iter().map(Credential::from).collect())
}

pub(crate) async fn revoke(store: &PgStore, access_key: &str, now: Timestamp) -> StoreResult<bool> {
    let changed = sqlx::query(
        "UPDATE credentials SET revoked_at = $1 WHERE access_key = $2 AND revoked_at IS NULL",
    )
    .bind(now.0)
    .bind(access_key)
    .execute(&store.pool)
    .await
    .map_err(db)?
    .rows_affected();
    Ok(changed == 1)
}
