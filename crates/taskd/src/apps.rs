//! `taskd apps create|list|revoke`: applications (NAs) of the legacy northbound API
//! (`docs/legacy-northbound.md`). An app logs in with its app id and secret; the secret is
//! stored as a salted hash, so it is shown once, at creation.

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;
use taskd_core::{Clock, SystemClock};
use taskd_store::{LegacyApp, Store};

use crate::DataArgs;
use crate::credentials::normalize_project_id;

#[derive(Subcommand)]
pub enum AppsCommand {
    /// Create an app for a project (the project is created if new). Creating an existing
    /// app of the same project again sets a new secret and ends its tokens.
    Create {
        #[command(flatten)]
        data: DataArgs,
        /// The project (32 hexadecimal characters).
        #[arg(long)]
        project_id: String,
        /// App id to register; generated when omitted.
        #[arg(long)]
        app_id: Option<String>,
        /// Secret to register; generated when omitted.
        #[arg(long)]
        secret: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List apps (never their secrets).
    List {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        json: bool,
    },
    /// Revoke (freeze) an app: its tokens stop working, its logins are refused.
    Revoke {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        app_id: String,
    },
}

/// App ids travel in the `app_key` header and form bodies: 1-256 letters, digits, `_`, `-`.
fn check_app_id(app_id: &str) -> anyhow::Result<()> {
    let ok = (1..=256).contains(&app_id.len())
        && app_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        bail!("app id must be 1-256 letters, digits, '_' or '-'");
    }
    Ok(())
}

fn check_secret(secret: &str) -> anyhow::Result<()> {
    let ok = (1..=256).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        bail!("secret must be 1-256 printable ASCII characters without spaces");
    }
    Ok(())
}

pub async fn run(cmd: AppsCommand) -> anyhow::Result<()> {
    match cmd {
        AppsCommand::Create {
            data,
            project_id,
            app_id,
            secret,
            json,
        } => {
            let project_id = normalize_project_id(&project_id)?;
            let app_id = app_id.unwrap_or_else(uuid_like);
            let secret = secret.unwrap_or_else(taskd_api::legacy::generate_secret);
            check_app_id(&app_id)?;
            check_secret(&secret)?;
            let store = open(&data).await?;
            let result = store
                .legacy_app_put(&LegacyApp {
                    app_id: app_id.clone(),
                    project_id: project_id.clone(),
                    secret_hash: taskd_api::legacy::hash_secret(&secret),
                    created_at: SystemClock.now(),
                    revoked_at: None,
                })
                .await
                .context("storing the app");
            store.close().await;
            result?;
            if json {
                println!(
                    "{}",
                    json!({ "project_id": project_id, "app_id": app_id, "secret": secret })
                );
            } else {
                println!("project_id: {project_id}");
                println!("app_id: {app_id}");
                println!("secret: {secret}");
            }
        }
        AppsCommand::List { data, json } => {
            let store = open(&data).await?;
            let all = store.legacy_app_list().await;
            store.close().await;
            let all = all?;
            if json {
                let rows: Vec<_> = all
                    .iter()
                    .map(|a| {
                        json!({
                            "app_id": a.app_id,
                            "project_id": a.project_id,
                            "created_at": a.created_at.millis(),
                            "revoked": a.revoked_at.is_some(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!("{:<40} {:<34} STATUS", "APP ID", "PROJECT");
                for a in &all {
                    let status = if a.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    println!("{:<40} {:<34} {status}", a.app_id, a.project_id);
                }
            }
        }
        AppsCommand::Revoke { data, app_id } => {
            let store = open(&data).await?;
            let revoked = store.legacy_app_revoke(&app_id, SystemClock.now()).await;
            store.close().await;
            if !revoked? {
                bail!("no active app {app_id}");
            }
            println!("revoked {app_id}");
        }
    }
    Ok(())
}

/// A generated app id: 32 lowercase hex characters.
fn uuid_like() -> String {
    crate::credentials::generate_project_id()
}

async fn open(data: &DataArgs) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    Ok(crate::backend::Backend::open(data).await?.store())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids_and_secrets_are_checked() {
        assert!(check_app_id("my_app-1").is_ok());
        assert!(check_app_id("").is_err());
        assert!(check_app_id("a b").is_err());
        assert!(check_secret("s3cret").is_ok());
        assert!(check_secret("has space").is_err());
        assert_eq!(uuid_like().len(), 32);
    }
}
