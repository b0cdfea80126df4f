//! The fleet's counters: plain atomics every device task bumps, read as a [`Snapshot`]
//! for the periodic line on stderr and the final summary.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::device::Handled;

/// A counter the device tasks share.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Only for gauges (`connected`), each `dec` after its `inc`.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default, Debug)]
pub struct Stats {
    /// Devices connected now.
    pub connected: Counter,
    /// CONNACK 0 received (reconnects included).
    pub connects: Counter,
    /// CONNACK 4: bad user name or password (a device registered with another secret).
    pub refused_credentials: Counter,
    /// CONNACK 5: not authorised (frozen, or `secure_access` on a plain port).
    pub refused_not_authorized: Counter,
    /// CONNACK 2: client id rejected.
    pub refused_client_id: Counter,
    pub refused_other: Counter,
    /// TCP, timeout or protocol errors before a CONNACK.
    pub connect_errors: Counter,
    /// Connections lost after a CONNACK 0.
    pub drops: Counter,
    /// SUBACK 0x80 per filter.
    pub subscriptions_refused: Counter,
    /// Every PUBLISH received.
    pub received: Counter,
    pub commands_ok: Counter,
    pub commands_failed: Counter,
    pub property_sets: Counter,
    pub property_sets_refused: Counter,
    pub property_gets: Counter,
    pub messages: Counter,
    pub version_queries: Counter,
    pub other_events: Counter,
    pub shadow_responses: Counter,
    /// The device's own uplinks routed back by a plain broker (see `Downlink::Echo`).
    pub echoes: Counter,
    pub unknown: Counter,
    /// Property reports sent.
    pub reports: Counter,
    /// Answers and reports that could not be queued: the device stopped before a
    /// delayed answer was due, or the topic was invalid (a request id with `+` or `#`).
    pub publish_dropped: Counter,
}

impl Stats {
    pub fn count(&self, handled: Handled) {
        match handled {
            Handled::CommandOk => &self.commands_ok,
            Handled::CommandFailed => &self.commands_failed,
            Handled::PropertiesSet => &self.property_sets,
            Handled::PropertiesSetRefused => &self.property_sets_refused,
            Handled::PropertiesGet => &self.property_gets,
            Handled::Message => &self.messages,
            Handled::VersionQuery => &self.version_queries,
            Handled::OtherEvent => &self.other_events,
            Handled::ShadowResponse => &self.shadow_responses,
            Handled::Echo => &self.echoes,
            Handled::Unknown => &self.unknown,
        }
        .inc();
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            connected: self.connected.get(),
            connects: self.connects.get(),
            refused: Refused {
                bad_credentials: self.refused_credentials.get(),
                not_authorized: self.refused_not_authorized.get(),
                client_id: self.refused_client_id.get(),
                other: self.refused_other.get(),
            },
            connect_errors: self.connect_errors.get(),
            drops: self.drops.get(),
            subscriptions_refused: self.subscriptions_refused.get(),
            received: self.received.get(),
            commands_ok: self.commands_ok.get(),
            commands_failed: self.commands_failed.get(),
            property_sets: self.property_sets.get(),
            property_sets_refused: self.property_sets_refused.get(),
            property_gets: self.property_gets.get(),
            messages: self.messages.get(),
            version_queries: self.version_queries.get(),
            other_events: self.other_events.get(),
            shadow_responses: self.shadow_responses.get(),
            echoes: self.echoes.get(),
            unknown: self.unknown.get(),
            reports: self.reports.get(),
            publish_dropped: self.publish_dropped.get(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Refused {
    pub bad_credentials: u64,
    pub not_authorized: u64,
    pub client_id: u64,
    pub other: u64,
}

/// The counters at one moment (the final summary's `stats`, where `connected` is the
/// devices connected when the simulator was told to stop).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub connected: u64,
    pub connects: u64,
    pub refused: Refused,
    pub connect_errors: u64,
    pub drops: u64,
    pub subscriptions_refused: u64,
    pub received: u64,
    pub commands_ok: u64,
    pub commands_failed: u64,
    pub property_sets: u64,
    pub property_sets_refused: u64,
    pub property_gets: u64,
    pub messages: u64,
    pub version_queries: u64,
    pub other_events: u64,
    pub shadow_responses: u64,
    pub echoes: u64,
    pub unknown: u64,
    pub reports: u64,
    pub publish_dropped: u64,
}

impl Snapshot {
    /// One line for stderr; zero counters of rare things are left out.
    pub fn line(&self, devices: usize) -> String {
        let mut line = format!(
            "connected {}/{devices}, connects {}, received {}: commands {} ok {} failed, \
             property sets {}, gets {}, messages {}",
            self.connected,
            self.connects,
            self.received,
            self.commands_ok,
            self.commands_failed,
            self.property_sets,
            self.property_gets,
            self.messages,
        );
        let rare = [
            ("version queries", self.version_queries),
            ("other events", self.other_events),
            ("shadow responses", self.shadow_responses),
            ("echoes of own uplinks", self.echoes),
            ("unknown topics", self.unknown),
            ("reports sent", self.reports),
            ("refused sets", self.property_sets_refused),
            ("refused (bad credentials)", self.refused.bad_credentials),
            ("refused (not authorised)", self.refused.not_authorized),
            ("refused (client id)", self.refused.client_id),
            ("refused (other)", self.refused.other),
            ("connect errors", self.connect_errors),
            ("drops", self.drops),
            ("refused subscriptions", self.subscriptions_refused),
            ("dropped publishes", self.publish_dropped),
        ];
        for (name, n) in rare {
            if n > 0 {
                line.push_str(&format!(", {name} {n}"));
            }
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handled_downlinks_land_in_their_counters() {
        let s = Stats::default();
        s.count(Handled::CommandOk);
        s.count(Handled::CommandOk);
        s.count(Handled::CommandFailed);
        s.count(Handled::VersionQuery);
        s.connected.inc();
        s.connected.inc();
        s.connected.dec();
        let snap = s.snapshot();
        assert_eq!(
            (
                snap.commands_ok,
                snap.commands_failed,
                snap.version_queries,
                snap.connected
            ),
            (2, 1, 1, 1)
        );
        assert_eq!(
            snap.line(3),
            "connected 1/3, connects 0, received 0: commands 2 ok 1 failed, property sets 0, \
             gets 0, messages 0, version queries 1"
        );
    }
}
