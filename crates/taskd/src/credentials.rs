//! `taskd credentials create|list|revoke`: access keys and the projects they belong to.
//!
//! These open the same database as a running server (SQLite in WAL mode lets both in), so
//! a key created here works at once, and a revoked one stops working at the next request.

use anyhow::{Context, bail};
use clap::Subcommand;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::json;
use taskd_core::{Clock, Credential, SystemClock};
use taskd_store::Store;

use crate::DataArgs;

#[derive(Subcommand)]
pub enum CredentialsCommand {
    /// Create an access key for a project (the project is created if new).
    Create {
        #[command(flatten)]
        data: DataArgs,
        /// The project (32 hexadecimal characters).
        #[arg(long)]
        project_id: String,
        /// Access key to register; generated when omitted.
        #[arg(long)]
        ak: Option<String>,
        /// Secret key to register; generated when omitted.
        #[arg(long)]
        sk: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List access keys (never their secrets).
    List {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an access key: requests signed with it are refused from then on.
    Revoke {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        ak: String,
    },
}

/// Checks a project id: exactly 32 hexadecimal characters, stored lowercase.
pub fn normalize_project_id(project_id: &str) -> anyhow::Result<String> {
    if project_id.len() != 32 || !project_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("project id must be 32 hexadecimal characters, got {project_id:?}");
    }
    Ok(project_id.to_ascii_lowercase())
}

/// Access keys appear inside the `Authorization` header (`Access=AK,` and `Credential=AK/`),
/// so they may not contain separators.
pub fn check_access_key(ak: &str) -> anyhow::Result<()> {
    let ok = (1..=128).contains(&ak.len())
        && ak
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        bail!("access key must be 1-128 letters, digits, '_' or '-'");
    }
    Ok(())
}

pub fn check_secret_key(sk: &str) -> anyhow::Result<()> {
    let ok = (1..=256).contains(&sk.len()) && sk.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        bail!("secret key must be 1-256 printable ASCII characters without spaces");
    }
    Ok(())
}

fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A fresh credential: a 20-character upper-case access key and a 40-character secret,
/// the shapes Huawei Cloud issues.
pub fn generate(
    project_id: &str,
    ak: Option<String>,
    sk: Option<String>,
) -> anyhow::Result<Credential> {
    let access_key = ak.unwrap_or_else(|| random_string(20).to_ascii_uppercase());
    let secret_key = sk.unwrap_or_else(|| random_string(40));
    check_access_key(&access_key)?;
    check_secret_key(&secret_key)?;
    Ok(Credential {
        access_key,
        secret_key,
        project_id: normalize_project_id(project_id)?,
        created_at: SystemClock.now(),
        revoked_at: None,
    })
}

pub fn generate_project_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

pub async fn run(cmd: CredentialsCommand) -> anyhow::Result<()> {
    match cmd {
        CredentialsCommand::Create {
            data,
            project_id,
            ak,
            sk,
            json,
        } => {
            let credential = generate(&project_id, ak, sk)?;
            let store = open(&data).await?;
            store
                .credential_put(&credential)
                .await
                .context("storing the credential")?;
            store.close().await;
            if json {
                println!(
                    "{}",
                    json!({
                        "project_id": credential.project_id,
                        "access_key": credential.access_key,
                        "secret_key": credential.secret_key,
                    })
                );
            } else {
                println!("project_id: {}", credential.project_id);
                println!("access_key: {}", credential.access_key);
                println!("secret_key: {}", credential.secret_key);
            }
        }
        CredentialsCommand::List { data, json } => {
            let store = open(&data).await?;
            let all = store.credential_list().await?;
            store.close().await;
            if json {
                let rows: Vec<_> = all
                    .iter()
                    .map(|c| {
                        json!({
                            "access_key": c.access_key,
                            "project_id": c.project_id,
                            "created_at": c.created_at.millis(),
                            "revoked": c.revoked_at.is_some(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!("{:<24} {:<34} STATUS", "ACCESS KEY", "PROJECT");
                for c in &all {
                    let status = if c.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    println!("{:<24} {:<34} {status}", c.access_key, c.project_id);
                }
            }
        }
        CredentialsCommand::Revoke { data, ak } => {
            let store = open(&data).await?;
            let revoked = store.credential_revoke(&ak, SystemClock.now()).await?;
            store.close().await;
            if !revoked {
                bail!("no active access key {ak}");
            }
            println!("revoked {ak}");
        }
    }
    Ok(())
}

async fn open(data: &DataArgs) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    Ok(crate::backend::Backend::open(data).await?.store())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_credentials_are_valid() {
        let c = generate(&generate_project_id(), None, None).unwrap();
        assert_eq!(c.access_key.len(), 20);
        assert_eq!(c.secret_key.len(), 40);
        assert_eq!(c.project_id.len(), 32);
    }

    #[test]
    fn rejects_bad_inputs() {
        assert!(normalize_project_id("xyz").is_err());
        assert_eq!(
            normalize_project_id(&"AB".repeat(16)).unwrap(),
            "ab".repeat(16)
        );
        assert!(check_access_key("AK/1").is_err());
        assert!(check_access_key("AK, x").is_err());
        assert!(check_secret_key("has space").is_err());
    }
}
