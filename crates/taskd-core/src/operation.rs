//! Instance operations: a task with one target (the instance or resource) recorded by the
//! control plane that owns the instances, run by its workers, and read through the
//! IoTDA instance-task, DMS RabbitMQ background-task and SWR instance-job dialects.
//!
//! An operation *is* a task (same table, same engine, same states); [`Operation`] holds
//! what a batch task lacks: the service it belongs to, the instance, who asked, the
//! target configuration and the maintenance window. Its `params` are the task's
//! `document_json` (what a worker gets as `document`).

use crate::clock::Timestamp;
use crate::task::TaskScope;

/// The service an operation belongs to: decides which dialect lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpService {
    /// IoTDA instance tasks (`IoTDMClient`), per instance.
    IotdaInstance,
    /// DMS for RabbitMQ background tasks (`RabbitMQClient`), per instance.
    Rabbitmq,
    /// SWR Enterprise instance jobs (`SwrClient`), listed per project.
    Swr,
}

impl OpService {
    pub const ALL: [OpService; 3] = [
        OpService::IotdaInstance,
        OpService::Rabbitmq,
        OpService::Swr,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            OpService::IotdaInstance => "iotda-instance",
            OpService::Rabbitmq => "rabbitmq",
            OpService::Swr => "swr",
        }
    }

    pub fn parse(s: &str) -> Option<OpService> {
        OpService::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The task scope an operation of this service on `instance_id` lives in. Operations
    /// live in scopes of their own (`"<service>:<instance>"`, or `"swr:"` for SWR, whose
    /// jobs are listed per project): a batch task's instance id never contains `:`, so no
    /// batch-task listing or count ever sees an operation, and one instance's operations
    /// never see another's.
    pub fn scope(self, project_id: &str, instance_id: &str) -> TaskScope {
        let key = match self {
            OpService::Swr => "swr:".to_owned(),
            other => format!("{}:{instance_id}", other.as_str()),
        };
        TaskScope::new(project_id, key)
    }

    /// The instance ids this service accepts: IoTDA `[0-9a-f-]{1,36}`; RabbitMQ and SWR
    /// `[A-Za-z0-9-]{1,64}` (UUIDs in practice).
    pub fn is_instance_id(self, s: &str) -> bool {
        match self {
            OpService::IotdaInstance => {
                (1..=36).contains(&s.len())
                    && s.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-')
            }
            OpService::Rabbitmq | OpService::Swr => {
                (1..=64).contains(&s.len())
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }
        }
    }
}

/// The IoTDA instance task types.
pub const IOTDA_INSTANCE_TYPES: [&str; 8] = [
    "CREATE",
    "MODIFY",
    "DELETE",
    "FREEZE",
    "UNFREEZE",
    "UPDATE_ACCESS_CONFIG",
    "UPDATE_ALLOW_LISTS",
    "OPEN_SNAT",
];

/// A daily maintenance window in UTC: minutes of the day, `start` inclusive, `end`
/// exclusive. `start > end` wraps midnight (`22:00`-`02:00`); `start == end` is refused
/// by [`OperateWindow::new`] (an empty window would never open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperateWindow {
    start: u16,
    end: u16,
}

pub const MINUTES_PER_DAY: i64 = 24 * 60;
const DAY_MS: i64 = MINUTES_PER_DAY * 60_000;

/// The UTC minute of the day `t` falls in (0-1439).
pub fn minute_of_day(t: Timestamp) -> i64 {
    t.0.div_euclid(60_000).rem_euclid(MINUTES_PER_DAY)
}

impl OperateWindow {
    pub fn new(start_minute: u16, end_minute: u16) -> Option<OperateWindow> {
        let day = MINUTES_PER_DAY as u16;
        (start_minute < day && end_minute < day && start_minute != end_minute).then_some(
            OperateWindow {
                start: start_minute,
                end: end_minute,
            },
        )
    }

    /// From `"HH:mm"` pairs (`^([01][0-9]|2[0-3]):[0-5][0-9]$`).
    pub fn parse(start: &str, end: &str) -> Option<OperateWindow> {
        OperateWindow::new(parse_hh_mm(start)?, parse_hh_mm(end)?)
    }

    pub const fn start_minute(self) -> u16 {
        self.start
    }

    pub const fn end_minute(self) -> u16 {
        self.end
    }

    /// `"HH:mm"` of the start and of the end.
    pub fn format(self) -> (String, String) {
        (format_hh_mm(self.start), format_hh_mm(self.end))
    }

    /// Whether the window is open at `t`. The stores apply the same rule in their claim
    /// (from the stored minutes and the `now` they are given).
    pub fn contains(self, t: Timestamp) -> bool {
        let m = minute_of_day(t);
        let (s, e) = (i64::from(self.start), i64::from(self.end));
        if s < e {
            s <= m && m < e
        } else {
            m >= s || m < e
        }
    }

    /// `t` when the window is open then, else the next moment it opens.
    pub fn next_open(self, t: Timestamp) -> Timestamp {
        if self.contains(t) {
            return t;
        }
        let day_start = t.0 - t.0.rem_euclid(DAY_MS);
        let open_today = day_start + i64::from(self.start) * 60_000;
        if open_today > t.0 {
            Timestamp(open_today)
        } else {
            Timestamp(open_today + DAY_MS)
        }
    }
}

fn parse_hh_mm(s: &str) -> Option<u16> {
    let b = s.as_bytes();
    if b.len() != 5
        || b[2] != b':'
        || !b
            .iter()
            .enumerate()
            .all(|(i, c)| i == 2 || c.is_ascii_digit())
    {
        return None;
    }
    let h = u16::from(b[0] - b'0') * 10 + u16::from(b[1] - b'0');
    let m = u16::from(b[3] - b'0') * 10 + u16::from(b[4] - b'0');
    (h < 24 && m < 60).then_some(h * 60 + m)
}

fn format_hh_mm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// What makes a task an operation (`Task::operation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub service: OpService,
    /// The instance the operation acts on (its scope is derived from it, see
    /// [`OpService::scope`]).
    pub instance_id: String,
    /// The user who asked (RabbitMQ `user_name`).
    pub user_name: Option<String>,
    /// RabbitMQ `user_id`.
    pub user_id: Option<String>,
    /// IoTDA `target_config` (flavour and charge mode) as JSON text.
    pub target_config_json: Option<String>,
    /// Runs only while this window is open.
    pub window: Option<OperateWindow>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY0: i64 = 1_700_006_400_000; // 2023-11-15T00:00:00Z

    fn at(h: i64, m: i64) -> Timestamp {
        Timestamp(DAY0 + (h * 60 + m) * 60_000)
    }

    #[test]
    fn windows_parse_and_refuse_bad_times() {
        let w = OperateWindow::parse("18:00", "22:30").unwrap();
        assert_eq!((w.start_minute(), w.end_minute()), (1080, 1350));
        assert_eq!(w.format(), ("18:00".to_owned(), "22:30".to_owned()));
        for bad in ["24:00", "18:60", "8:00", "18:0", "1800", "ab:cd", "18:00 "] {
            assert!(OperateWindow::parse(bad, "22:00").is_none(), "{bad}");
        }
        assert!(OperateWindow::parse("10:00", "10:00").is_none());
    }

    #[test]
    fn window_contains_and_next_open() {
        let w = OperateWindow::parse("18:00", "22:00").unwrap();
        assert!(!w.contains(at(17, 59)));
        assert!(w.contains(at(18, 0)));
        assert!(w.contains(at(21, 59)));
        assert!(!w.contains(at(22, 0)));
        assert_eq!(w.next_open(at(10, 0)), at(18, 0));
        assert_eq!(w.next_open(at(19, 0)), at(19, 0));
        assert_eq!(w.next_open(at(23, 0)), at(24 + 18, 0));
    }

    #[test]
    fn windows_wrap_midnight() {
        let w = OperateWindow::parse("22:00", "02:00").unwrap();
        assert!(w.contains(at(23, 0)));
        assert!(w.contains(at(1, 59)));
        assert!(!w.contains(at(2, 0)));
        assert!(!w.contains(at(12, 0)));
        assert_eq!(w.next_open(at(12, 0)), at(22, 0));
        assert_eq!(w.next_open(at(0, 30)), at(0, 30));
    }

    #[test]
    fn scopes_keep_services_and_instances_apart() {
        let a = OpService::Rabbitmq.scope("p", "i1");
        assert_eq!(a.instance_id, "rabbitmq:i1");
        assert_ne!(a, OpService::IotdaInstance.scope("p", "i1"));
        assert_eq!(
            OpService::Swr.scope("p", "x"),
            OpService::Swr.scope("p", "y")
        );
        assert!(OpService::IotdaInstance.is_instance_id("0a1b-2c"));
        assert!(!OpService::IotdaInstance.is_instance_id("ABC"));
        assert!(OpService::Swr.is_instance_id("36ce7f50-b2d5-11eb-b044-0255ac101219"));
        assert!(!OpService::Rabbitmq.is_instance_id("a:b"));
        assert_eq!(OpService::parse("swr"), Some(OpService::Swr));
        assert_eq!(OpService::parse("SWR"), None);
    }
}
