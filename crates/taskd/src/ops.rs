//! `taskd ops`: the control plane's side of instance operations, over the signed native
//! API (`docs/instance-operations.md`): `create` records an operation, `list` shows a
//! service instance's operations. Uses the worker's signing client.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::worker::client::{CallError, Client};

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Args, Debug)]
pub struct Connection {
    /// taskd's base URL (plain HTTP), e.g. http://taskd:8080.
    #[arg(long, env = "TASKD_ENDPOINT")]
    endpoint: String,
    /// Access key of the project's credential.
    #[arg(long, env = "TASKD_AK")]
    ak: String,
    /// Secret key (prefer the environment: arguments show in `ps`).
    #[arg(long, env = "TASKD_SK", hide_env_values = true)]
    sk: String,
    /// The project the operations belong to.
    #[arg(long, env = "TASKD_PROJECT_ID")]
    project_id: String,
}

#[derive(clap::Subcommand, Debug)]
pub enum OpsCommand {
    /// Record an operation on a service instance; a worker runs it.
    Create(Box<CreateArgs>),
    /// List the operations of a service instance (SWR: of the project), newest first.
    List(ListArgs),
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    conn: Connection,
    /// iotda-instance, rabbitmq or swr.
    #[arg(long)]
    service: String,
    #[arg(long)]
    instance_id: String,
    /// The operation's type (IoTDA: CREATE, MODIFY, ...; RabbitMQ: the task name, e.g.
    /// bindInstancePublicIp; SWR: e.g. CreateInstance). Workers claim it by this type.
    #[arg(long = "type")]
    kind: String,
    /// Display name (SWR resource_name) [default: the type].
    #[arg(long)]
    name: Option<String>,
    /// What it acts on (SWR resource_id) [default: the instance].
    #[arg(long)]
    target: Option<String>,
    /// Parameters, a JSON object.
    #[arg(long)]
    params: Option<String>,
    /// The user who asked.
    #[arg(long)]
    user_name: Option<String>,
    #[arg(long)]
    user_id: Option<String>,
    /// Not before this time, yyyyMMdd'T'HHmmss'Z' (UTC).
    #[arg(long)]
    schedule_time: Option<String>,
    /// Maintenance window HH:mm-HH:mm (UTC): runs only while it is open.
    #[arg(long)]
    window: Option<String>,
    /// IoTDA MODIFY: the target flavour (e.g. iotda.standard.s2).
    #[arg(long)]
    flavor_type: Option<String>,
    /// IoTDA MODIFY: units of the flavour (1-200).
    #[arg(long)]
    flavor_size: Option<i64>,
    /// IoTDA MODIFY: prePaid or postPaid.
    #[arg(long)]
    charge_mode: Option<String>,
    /// Print the created operation as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    conn: Connection,
    #[arg(long)]
    service: String,
    /// Required except for swr.
    #[arg(long)]
    instance_id: Option<String>,
    /// 1-100.
    #[arg(long)]
    limit: Option<u32>,
    /// The last operation id of the previous page.
    #[arg(long)]
    marker: Option<String>,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(cmd: OpsCommand) -> anyhow::Result<()> {
    match cmd {
        OpsCommand::Create(args) => create(*args).await,
        OpsCommand::List(args) => list(args).await,
    }
}

fn client(c: &Connection) -> anyhow::Result<Client> {
    Client::new(&c.endpoint, &c.ak, &c.sk, &c.project_id)
}

fn refused(e: CallError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn create_body(a: &CreateArgs) -> anyhow::Result<Value> {
    let mut body = json!({
        "service": a.service,
        "instance_id": a.instance_id,
        "type": a.kind,
    });
    let set = |body: &mut Value, k: &str, v: &Option<String>| {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    };
    set(&mut body, "name", &a.name);
    set(&mut body, "target", &a.target);
    set(&mut body, "user_name", &a.user_name);
    set(&mut body, "user_id", &a.user_id);
    set(&mut body, "schedule_time", &a.schedule_time);
    if let Some(p) = &a.params {
        body["params"] = serde_json::from_str(p).context("--params is not JSON")?;
    }
    if let Some(w) = &a.window {
        let Some((start, end)) = w.split_once('-') else {
            bail!("--window must be HH:mm-HH:mm");
        };
        body["operate_window"] = json!({ "start_time": start, "end_time": end });
    }
    if a.flavor_type.is_some() || a.flavor_size.is_some() || a.charge_mode.is_some() {
        let mut tc = json!({});
        if let Some(t) = &a.flavor_type {
            tc["flavor"] = json!({ "type": t });
            if let Some(s) = a.flavor_size {
                tc["flavor"]["size"] = json!(s);
            }
        } else if a.flavor_size.is_some() {
            bail!("--flavor-size needs --flavor-type");
        }
        if let Some(m) = &a.charge_mode {
            tc["charge_mode"] = json!(m);
        }
        body["target_config"] = tc;
    }
    Ok(body)
}

async fn create(a: CreateArgs) -> anyhow::Result<()> {
    let client = client(&a.conn)?;
    let body = create_body(&a)?;
    let created: Value = client
        .call(
            "POST",
            &client.project_path("operations"),
            &[],
            serde_json::to_vec(&body)?,
            TIMEOUT,
        )
        .await
        .map_err(refused)?;
    if a.json {
        println!("{created}");
    } else {
        println!(
            "operation {} created ({} {} on {}, {})",
            created["operation_id"].as_str().unwrap_or("?"),
            created["service"].as_str().unwrap_or("?"),
            created["type"].as_str().unwrap_or("?"),
            created["instance_id"].as_str().unwrap_or("?"),
            created["state"].as_str().unwrap_or("?"),
        );
    }
    Ok(())
}

async fn list(a: ListArgs) -> anyhow::Result<()> {
    let client = client(&a.conn)?;
    let limit = a.limit.map(|l| l.to_string());
    let mut query: Vec<(&str, &str)> = vec![("service", a.service.as_str())];
    if let Some(i) = &a.instance_id {
        query.push(("instance_id", i));
    }
    if let Some(l) = &limit {
        query.push(("limit", l));
    }
    if let Some(m) = &a.marker {
        query.push(("marker", m));
    }
    let page: Value = client
        .call(
            "GET",
            &client.project_path("operations"),
            &query,
            Vec::new(),
            TIMEOUT,
        )
        .await
        .map_err(refused)?;
    if a.json {
        println!("{page}");
        return Ok(());
    }
    println!("{} operation(s)", page["count"]);
    for op in page["operations"].as_array().into_iter().flatten() {
        println!(
            "{}  {:<14} {:<24} {:<12} {:>3}%  {}",
            op["operation_id"].as_str().unwrap_or(""),
            op["service"].as_str().unwrap_or(""),
            op["type"].as_str().unwrap_or(""),
            op["state"].as_str().unwrap_or(""),
            op["progress"].as_u64().unwrap_or(0),
            op["created_at"].as_str().unwrap_or(""),
        );
    }
    Ok(())
}
