//! Projects and API credentials.

use taskd_core::{Credential, Timestamp};
use taskd_store::{StoreError, StoreResult};

use crate::CredentialRow;
use crate::driver::{Conn, DialectSql, Driver, Stmt, Tx};

const PROJECT_ENSURE_SQL: &str =
    "INSERT INTO projects (project_id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING";

pub async fn project_ensure<D: Driver>(
    driver: &D,
    project_id: &str,
    now: Timestamp,
) -> StoreResult<()> {
    driver
        .write_one(Stmt::new(PROJECT_ENSURE_SQL).bind(project_id).bind(now.0))
        .await?;
    Ok(())
}

pub async fn put<D: Driver>(driver: &D, c: &Credential) -> StoreResult<()> {
    let mut tx = driver.begin_write().await?;
    tx.execute(
        Stmt::new(PROJECT_ENSURE_SQL)
            .bind(&c.project_id)
            .bind(c.created_at.0),
    )
    .await?;
    // Same project again: new secret, revocation state as given (normally active); the
    // key keeps the time it was first created. Another project's key is left alone (the
    // `WHERE` of `DO UPDATE`), in the same statement, so two nodes registering one key
    // for two projects at once can't both succeed.
    let changed = tx
        .execute(
            Stmt::new(
                "INSERT INTO credentials (access_key, secret_key, project_id, created_at, \
                 revoked_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (access_key) DO UPDATE \
                 SET secret_key = excluded.secret_key, revoked_at = excluded.revoked_at \
                 WHERE credentials.project_id = excluded.project_id",
            )
            .bind(&c.access_key)
            .bind(&c.secret_key)
            .bind(&c.project_id)
            .bind(c.created_at.0)
            .bind(c.revoked_at.map(|t| t.0)),
        )
        .await?;
    if changed != 1 {
        // The access key is not echoed: it names another project's credential.
        return Err(StoreError::Conflict(
            "access key belongs to another project".to_owned(),
        ));
    }
    tx.commit().await
}

pub async fn get<D: Driver>(driver: &D, access_key: &str) -> StoreResult<Option<Credential>> {
    let row: Option<CredentialRow> = driver
        .read()
        .await?
        .fetch_optional(
            Stmt::new(
                "SELECT access_key, secret_key, project_id, created_at, revoked_at \
                 FROM credentials WHERE access_key = $1 AND revoked_at IS NULL",
            )
            .bind(access_key),
        )
        .await?;
    Ok(row.map(Credential::from))
}

pub async fn list<D: Driver>(driver: &D) -> StoreResult<Vec<Credential>> {
    let rows: Vec<CredentialRow> = driver
        .read()
        .await?
        .fetch_all(Stmt::new(D::sql(DialectSql::CredentialList)))
        .await?;
    Ok(rows.into_iter().map(Credential::from).collect())
}

pub async fn revoke<D: Driver>(driver: &D, access_key: &str, now: Timestamp) -> StoreResult<bool> {
    let changed = driver
        .write_one(
            Stmt::new(
                "UPDATE credentials SET revoked_at = $1 \
                 WHERE access_key = $2 AND revoked_at IS NULL",
            )
            .bind(now.0)
            .bind(access_key),
        )
        .await?;
    Ok(changed == 1)
}
