//! Opening the store a command was pointed at: the embedded SQLite file under
//! `--data-dir`, or PostgreSQL at `--database-url` (several taskd nodes may share one).

use std::sync::Arc;

use anyhow::Context;
use taskd_core::{TaskScope, Timestamp};
use taskd_store::Store;
use taskd_store_postgres::PgStore;
use taskd_store_sqlite::SqliteStore;

use crate::DataArgs;

/// The concrete backend, kept for the few things that are not part of `Store`
/// (benchmark seeding); everything else goes through [`Backend::store`].
pub enum Backend {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

impl Backend {
    /// Opens the backend and brings its schema up to date (both run their migrations
    /// on open).
    pub async fn open(data: &DataArgs) -> anyhow::Result<Backend> {
        match &data.database_url {
            Some(url) => {
                let store = taskd_store_postgres::connect(url)
                    .await
                    .with_context(|| format!("connecting to PostgreSQL at {}", redact(url)))?;
                Ok(Backend::Postgres(Arc::new(store)))
            }
            None => {
                let store = taskd_store_sqlite::open(&data.data_dir)
                    .await
                    .with_context(|| {
                        format!("opening the database in {}", data.data_dir.display())
                    })?;
                Ok(Backend::Sqlite(Arc::new(store)))
            }
        }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(s) => s.clone(),
            Backend::Postgres(s) => s.clone(),
        }
    }

    /// Where the data lives, for logs (never with a password).
    pub fn describe(&self, data: &DataArgs) -> String {
        match (self, &data.database_url) {
            (Backend::Postgres(_), Some(url)) => redact(url),
            _ => format!("sqlite:{}", data.data_dir.display()),
        }
    }

    pub async fn seed_benchmark_tasks(
        &self,
        scope: &TaskScope,
        n: i64,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        match self {
            Backend::Sqlite(s) => s.seed_benchmark_tasks(scope, n, now).await?,
            Backend::Postgres(s) => s.seed_benchmark_tasks(scope, n, now).await?,
        }
        Ok(())
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }
}
