//! Projects and API credentials.

use taskd_core::{Credential, Timestamp};
use taskd_store::{StoreError, StoreResult};

use crate::rows::CredentialRow;
use crate::{SqliteStore, begin_write, db};

pub(crate) async fn project_ensure(
    store: &SqliteStore,
    project_id: &str,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO projects (project_id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(project_id)
    .bind(now.0)
    .execute(&store.writer)
    .await
    .map_err(db)?;
    Ok(())
}

pub(crate) async fn put(store: &SqliteStore, c: &Credential) -> StoreResult<()> {
    let mut tx = begin_write(store).await?;
    sqlx::query(
        "INSERT INTO projects (project_id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(&c.project_id)
    .bind(c.created_at.0)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let owner: Option<String> =
        sqlx::query_scalar("SELECT project_id FROM credentials WHERE access_key = ?")
            .bind(&c.access_key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
    if let Some(owner) = owner
        && owner != c.project_id
    {
        // The access key is not echoed: it names another project's credential.
        return Err(StoreError::Conflict(
            "access key belongs to another project".to_owned(),
        ));
    }
    // Same project again: new secret, revocation state as given (normally active); the
    // key keeps the time it was first created.
    sqlx::query(
        "INSERT INTO credentials (access_key, secret_key, project_id, created_at, revoked_at) \
         VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (access_key) DO UPDATE \
         SET secret_key = excluded.secret_key, revoked_at = excluded.revoked_at",
    )
    .bind(&c.access_key)
    .bind(&c.secret_key)
    .bind(&c.project_id)
    .bind(c.created_at.0)
    .bind(c.revoked_at.map(|t| t.0))
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(())
}

pub(crate) async fn get(store: &SqliteStore, access_key: &str) -> StoreResult<Option<Credential>> {
    let row: Option<CredentialRow> = sqlx::query_as(
        "SELECT access_key, secret_key, project_id, created_at, revoked_at FROM credentials \
         WHERE access_key = ? AND revoked_at IS NULL",
    )
    .bind(access_key)
    .fetch_optional(&store.reader)
    .await
    .map_err(db)?;
    Ok(row.map(Credential::from))
}

pub(crate) async fn list(store: &SqliteStore) -> StoreResult<Vec<Credential>> {
    let rows: Vec<CredentialRow> = sqlx::query_as(
        "SELECT access_key, secret_key, project_id, created_at, revoked_at FROM credentials \
         ORDER BY created_at, rowid",
    )
    .fetch_all(&store.reader)
    .await
    .map_err(db)?;
    Ok(rows.into_iter().map(Credential::from).collect())
}

pub(crate) async fn revoke(
    store: &SqliteStore,
    access_key: &str,
    now: Timestamp,
) -> StoreResult<bool> {
    let changed = sqlx::query(
        "UPDATE credentials SET revoked_at = ? WHERE access_key = ? AND revoked_at IS NULL",
    )
    .bind(now.0)
    .bind(access_key)
    .execute(&store.writer)
    .await
    .map_err(db)?
    .rows_affected();
    Ok(changed == 1)
}
