//! `taskd devices simulate`: a fleet of IoTDA devices over real MQTT (docs/device-channel.md,
//! "Simulating a fleet").
//!
//! It registers N devices through IoTDA `AddDevice` ([`registry`]; devices that exist are
//! reused, their secrets derived from `--secret-seed`), then runs one task per device
//! ([`device::run`]): connect with IoTDA's credentials (handshakes bounded by
//! `--connect-concurrency`), subscribe, answer commands and property requests, report
//! properties, reconnect with back-off. Counters go to stderr every `--stats-interval`
//! seconds and a summary to stdout at the end (Ctrl-C, SIGTERM or `--duration`).

pub mod device;
pub mod registry;
pub mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use taskd_core::device::{MAX_NODE_ID_CHARS, MAX_PRODUCT_ID_CHARS, is_word_id};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::logging::{self, LogFormat};
use crate::worker::client::Client;
use device::{Behaviour, Fleet, Identity};
use registry::Registered;
use stats::{Snapshot, Stats};

/// Most devices one simulator runs.
pub const MAX_DEVICES: u32 = 100_000;
/// Longest `--fw-version` / `--sw-version` (IoTDA's version fields hold 256).
const MAX_VERSION_CHARS: usize = 256;
/// How often the fleet's state is looked at (for "all connected after").
const WATCH_EVERY: Duration = Duration::from_millis(20);

#[derive(clap::Subcommand)]
pub enum DevicesCommand {
    /// Run a fleet of simulated IoTDA devices over MQTT: registers them (or reuses them),
    /// connects them, answers commands and property requests.
    Simulate(Box<SimulateArgs>),
}

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// taskd's base URL (plain HTTP), e.g. http://127.0.0.1:8080; the devices are
    /// registered there.
    #[arg(
        long,
        env = "TASKD_ENDPOINT",
        required_unless_present = "skip_register"
    )]
    endpoint: Option<String>,
    /// Access key of the project's credential.
    #[arg(long, env = "TASKD_AK", required_unless_present = "skip_register")]
    ak: Option<String>,
    /// Secret key (prefer the environment: arguments show in `ps`).
    #[arg(
        long,
        env = "TASKD_SK",
        hide_env_values = true,
        required_unless_present = "skip_register"
    )]
    sk: Option<String>,
    /// The project the devices are registered in.
    #[arg(
        long,
        env = "TASKD_PROJECT_ID",
        required_unless_present = "skip_register"
    )]
    project_id: Option<String>,
    /// The MQTT listener the devices connect to (plain MQTT), HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    mqtt: (String, u16),
    /// How many devices.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DEVICES)))]
    count: u32,
    /// Product of the devices.
    #[arg(long, default_value = "taskd-sim")]
    product_id: String,
    /// Device ids (and node ids) are PREFIX1 ... PREFIXN.
    #[arg(long, default_value = "sim-")]
    prefix: String,
    /// Device secrets are derived from this, so a second run with the same seed reuses
    /// the registered devices. Anyone who knows it can connect as the devices: choose
    /// your own on a shared server.
    #[arg(
        long,
        env = "TASKD_SIM_SECRET_SEED",
        hide_env_values = true,
        default_value = "taskd-sim"
    )]
    secret_seed: String,
    /// Picks which commands fail under --fail-rate (the same seed fails the same ones).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fraction of commands answered with result_code 1, 0.0-1.0.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    fail_rate: f64,
    /// Milliseconds before a command is answered (at most one hour).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    delay_ms: u64,
    /// MQTT keepalive in seconds (IoTDA accepts 30-1200).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u16).range(30..=1200))]
    keepalive: u16,
    /// Each device reports its properties this often (milliseconds; 0 = never).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    report_interval_ms: u64,
    /// Firmware version a device reports when the platform asks (OTA version_query).
    #[arg(long, default_value = "v1.0", value_parser = parse_version)]
    fw_version: String,
    /// Software version a device reports when the platform asks (OTA version_query).
    #[arg(long, default_value = "v1.0", value_parser = parse_version)]
    sw_version: String,
    /// Stop after this many seconds of running (after registration) [default: run until
    /// Ctrl-C or SIGTERM].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    duration: Option<u64>,
    /// Print the final summary as JSON.
    #[arg(long)]
    json: bool,
    /// AddDevice calls in flight.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=256))]
    register_concurrency: u32,
    /// MQTT handshakes (TCP connect to CONNACK) in flight.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connect_concurrency: u32,
    /// Do not register: the devices exist already (with the same --secret-seed), or the
    /// broker accepts any credentials.
    #[arg(long)]
    skip_register: bool,
    /// Seconds between two stats lines on stderr (0: only the final summary).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    stats_interval: u64,
}

fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| "expected HOST:PORT, e.g. 127.0.0.1:1883".to_string())?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port number"))?;
    // `[::1]:1883`: the brackets belong to the address syntax, not to the host.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || port == 0 {
        return Err("expected HOST:PORT, e.g. 127.0.0.1:1883".into());
    }
    Ok((host.to_string(), port))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("a fraction between 0.0 and 1.0".into()),
    }
}

fn parse_version(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().count() > MAX_VERSION_CHARS || s.chars().any(char::is_control) {
        return Err(format!(
            "1-{MAX_VERSION_CHARS} characters, no control characters"
        ));
    }
    Ok(s.to_string())
}

/// `{prefix}1` ... `{prefix}{count}`, checked against IoTDA's id rules (the node id is
/// the device id, so the node id's 64 characters bound both).
fn device_ids(prefix: &str, count: u32) -> anyhow::Result<Vec<String>> {
    let longest = format!("{prefix}{count}");
    if !is_word_id(&longest, MAX_NODE_ID_CHARS) {
        bail!(
            "--prefix {prefix:?}: device ids like {longest:?} must be 1-{MAX_NODE_ID_CHARS} \
             letters, digits, '_' or '-'"
        );
    }
    Ok((1..=count).map(|i| format!("{prefix}{i}")).collect())
}

pub async fn run(cmd: DevicesCommand) -> anyhow::Result<()> {
    match cmd {
        DevicesCommand::Simulate(args) => simulate(*args).await,
    }
}

/// The final summary (stdout; JSON with `--json`).
#[derive(Debug, Serialize)]
struct Summary {
    devices: usize,
    mqtt: String,
    /// `null` with `--skip-register`.
    registered: Option<Registered>,
    registration_secs: f64,
    /// Since the devices started connecting.
    run_secs: f64,
    /// From the first connect until every device was connected at once, if that happened.
    all_connected_secs: Option<f64>,
    stats: Snapshot,
}

async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    logging::init(LogFormat::Text);
    if !is_word_id(&args.product_id, MAX_PRODUCT_ID_CHARS) {
        bail!("--product-id must be 1-{MAX_PRODUCT_ID_CHARS} letters, digits, '_' or '-'");
    }
    let ids = device_ids(&args.prefix, args.count)?;
    let fd_limit = crate::http_server::raise_fd_limit();
    if fd_limit < u64::from(args.count) + 64 {
        eprintln!(
            "sim: warning: {} devices need as many sockets; the descriptor limit is {fd_limit} \
             (raise it with ulimit -n)",
            args.count
        );
    }
    let stop = CancellationToken::new();
    watch_signals(stop.clone())?;
    let identities: Vec<Identity> = ids
        .into_iter()
        .map(|device_id| Identity {
            secret: registry::secret(&args.secret_seed, &device_id),
            device_id,
        })
        .collect();

    let started = Instant::now();
    let registered = if args.skip_register {
        None
    } else {
        let (Some(endpoint), Some(ak), Some(sk), Some(project)) =
            (&args.endpoint, &args.ak, &args.sk, &args.project_id)
        else {
            bail!("--endpoint, --ak, --sk and --project-id are required to register devices");
        };
        let client = Arc::new(Client::new(endpoint, ak, sk, project)?);
        Some(
            registry::register_all(
                client,
                &identities,
                &args.product_id,
                args.register_concurrency as usize,
                &stop,
            )
            .await
            .context("registering the devices")?,
        )
    };
    let registration_secs = started.elapsed().as_secs_f64();

    let (host, port) = args.mqtt.clone();
    let devices = identities.len();
    let fleet = Arc::new(Fleet {
        host,
        port,
        keepalive: Duration::from_secs(args.keepalive.into()),
        behaviour: Behaviour {
            fail_rate: args.fail_rate,
            seed: args.seed,
            command_delay: Duration::from_millis(args.delay_ms),
            report_interval: (args.report_interval_ms > 0)
                .then(|| Duration::from_millis(args.report_interval_ms)),
            fw_version: args.fw_version.clone(),
            sw_version: args.sw_version.clone(),
        },
        stats: Stats::default(),
        handshakes: Semaphore::new(args.connect_concurrency as usize),
        stop: stop.clone(),
    });
    eprintln!(
        "sim: connecting {devices} devices to {}:{} ({} handshakes at a time)",
        fleet.host, fleet.port, args.connect_concurrency
    );
    let running = Instant::now();
    let mut tasks = JoinSet::new();
    for identity in identities {
        tasks.spawn(device::run(identity, fleet.clone()));
    }
    if let Some(secs) = args.duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            stop.cancel();
        });
    }
    let watched = watch(&fleet, devices, args.stats_interval, running).await;
    eprintln!("sim: stopping: disconnecting the devices");
    while tasks.join_next().await.is_some() {}
    let mut stats = fleet.stats.snapshot();
    stats.connected = watched.connected;

    let summary = Summary {
        devices,
        mqtt: format!("{}:{}", fleet.host, fleet.port),
        registered,
        registration_secs,
        run_secs: running.elapsed().as_secs_f64(),
        all_connected_secs: watched.all_connected.map(|d| d.as_secs_f64()),
        stats,
    };
    print_summary(&summary, args.json)?;
    if summary.stats.connects == 0 {
        bail!("no device connected{}", hint(&summary.stats));
    }
    Ok(())
}

/// What [`watch`] saw.
struct Watched {
    /// How long it took until every device was connected at once.
    all_connected: Option<Duration>,
    /// Connected devices at the last look before the stop (the devices start
    /// disconnecting the moment it comes).
    connected: u64,
}

/// Prints the stats line every `stats_interval` seconds until the fleet stops.
async fn watch(fleet: &Fleet, devices: usize, stats_interval: u64, running: Instant) -> Watched {
    let mut all_connected = None;
    let mut connected = 0;
    let mut last_line = Instant::now();
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tokio::select! {
            _ = fleet.stop.cancelled() => return Watched { all_connected, connected },
            _ = tick.tick() => {}
        }
        let snapshot = fleet.stats.snapshot();
        connected = snapshot.connected;
        if all_connected.is_none() && snapshot.connected as usize == devices {
            let took = running.elapsed();
            all_connected = Some(took);
            eprintln!(
                "sim: all {devices} devices connected after {:.2}s",
                took.as_secs_f64()
            );
        }
        if stats_interval > 0 && last_line.elapsed() >= Duration::from_secs(stats_interval) {
            last_line = Instant::now();
            eprintln!(
                "sim: {:.0}s {}",
                running.elapsed().as_secs_f64(),
                snapshot.line(devices)
            );
        }
    }
}

/// What a refusal usually means, for the error line.
fn hint(s: &Snapshot) -> &'static str {
    if s.refused.bad_credentials > 0 {
        ": refused with bad credentials (registered earlier with another --secret-seed?)"
    } else if s.refused.not_authorized > 0 {
        ": not authorised (frozen devices, or registered with secure_access on?)"
    } else if s.connect_errors > 0 {
        ": the MQTT listener could not be reached"
    } else {
        ""
    }
}

fn print_summary(summary: &Summary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(summary)?);
        return Ok(());
    }
    if let Some(r) = summary.registered {
        println!(
            "registered {} devices in {:.1}s: {} created, {} existing",
            summary.devices, summary.registration_secs, r.created, r.existing
        );
    }
    match summary.all_connected_secs {
        Some(s) => println!("all {} devices connected after {s:.2}s", summary.devices),
        None => println!("not all {} devices were connected at once", summary.devices),
    }
    println!(
        "ran {:.1}s: {}",
        summary.run_secs,
        summary.stats.line(summary.devices)
    );
    Ok(())
}

/// First SIGINT/SIGTERM: stop (the devices disconnect). A second: exit at once.
fn watch_signals(stop: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        stop.cancel();
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        eprintln!("sim: stopping now");
        std::process::exit(130);
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: DevicesCommand,
    }

    fn parse(args: &[&str]) -> Result<SimulateArgs, clap::Error> {
        let mut argv = vec!["devices", "simulate"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|c| match c.cmd {
            DevicesCommand::Simulate(a) => *a,
        })
    }

    #[test]
    fn host_port_is_split_at_the_last_colon() {
        assert_eq!(
            parse_host_port("127.0.0.2:1883").unwrap(),
            ("127.0.0.2".into(), 1883)
        );
        assert_eq!(parse_host_port("[::1]:8883").unwrap(), ("::1".into(), 8883));
        assert_eq!(
            parse_host_port("broker.local:1").unwrap(),
            ("broker.local".into(), 1)
        );
        for bad in ["127.0.0.1", ":1883", "h:0", "h:70000", "h:x"] {
            assert!(parse_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn device_ids_follow_the_prefix_and_iotda_rules() {
        assert_eq!(device_ids("sim-", 3).unwrap(), ["sim-1", "sim-2", "sim-3"]);
        assert!(device_ids("bad prefix", 1).is_err());
        assert!(device_ids("a/b", 1).is_err());
        assert!(device_ids(&"p".repeat(62), 99).is_ok());
        assert!(device_ids(&"p".repeat(62), 100).is_err(), "65 characters");
    }

    #[test]
    fn the_command_line_has_its_defaults_and_limits() {
        let a = parse(&[
            "--skip-register",
            "--mqtt",
            "127.0.0.1:1883",
            "--count",
            "10",
        ])
        .unwrap();
        assert_eq!(
            (
                a.keepalive,
                a.fail_rate,
                a.delay_ms,
                a.report_interval_ms,
                a.prefix.as_str(),
                a.product_id.as_str(),
                a.fw_version.as_str()
            ),
            (120, 0.0, 0, 0, "sim-", "taskd-sim", "v1.0")
        );
        let base = ["--skip-register", "--mqtt", "h:1", "--count"];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            parse(&v)
        };
        assert!(with(&["0"]).is_err());
        assert!(with(&["100001"]).is_err());
        assert!(with(&["1", "--fail-rate", "1.5"]).is_err());
        assert!(with(&["1", "--fail-rate", "0.25"]).is_ok());
        assert!(with(&["1", "--keepalive", "10"]).is_err());
        assert!(with(&["1", "--keepalive", "1201"]).is_err());
        assert!(with(&["1", "--fw-version", ""]).is_err());
        // Registering needs the connection (flags or TASKD_* environment).
        if std::env::var_os("TASKD_ENDPOINT").is_none() {
            assert!(parse(&["--mqtt", "h:1", "--count", "1"]).is_err());
        }
    }

    #[test]
    fn the_summary_is_one_json_object() {
        let s = Summary {
            devices: 2,
            mqtt: "h:1".into(),
            registered: Some(Registered {
                created: 1,
                existing: 1,
            }),
            registration_secs: 0.5,
            run_secs: 1.0,
            all_connected_secs: Some(0.25),
            stats: Snapshot::default(),
        };
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(v["registered"]["existing"], 1);
        assert_eq!(v["all_connected_secs"], 0.25);
        assert_eq!(v["stats"]["refused"]["bad_credentials"], 0);
        assert_eq!(hint(&s.stats), "");
    }
}
