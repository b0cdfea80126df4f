//! CONNECT authentication exactly as IoTDA does it (spec §1.2–§1.4).
//!
//! * client id `{device_id}_{id_type}_{sign_type}_{YYYYMMDDHH}`, split from the right
//!   (device ids contain `_`);
//! * username = the device id;
//! * password = lowercase hex HMAC-SHA256, key = the client id's timestamp, message = the
//!   device secret, or its secondary secret (ResetDeviceSecret `SECONDARY`: "when the
//!   primary secret fails, the secondary secret is tried; it has the same effect", spec
//!   §1.4). Always checked with the client id's timestamp, never the server clock: the C
//!   SDK may move it forward an hour or more (spec §1.3).
//!
//! Each refusal has IoTDA's CONNACK code ([`Refusal::return_code`]).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};
use taskd_core::device::{MAX_DEVICE_ID_CHARS, is_word_id};
use taskd_core::{AuthType, DeviceStatus, Timestamp};
use taskd_store::DeviceLogin;

/// Keepalive IoTDA accepts, in seconds (spec §1.5): outside it CONNACK 2.
pub const KEEPALIVE_SECS: std::ops::RangeInclusive<u16> = 30..=1200;

/// How far a sign-type-1 timestamp may be from the server's hour (spec §6 Q3): two
/// hours either way, since the C SDK may move it forward.
const SIGN_TYPE_1_WINDOW_HOURS: i64 = 2;

/// Why a CONNECT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("protocol version not supported")]
    ProtocolVersion,
    #[error(
        "client id is not {{device_id}}_{{id_type}}_{{sign_type}}_{{YYYYMMDDHH}} for this username"
    )]
    MalformedClientId,
    #[error("keepalive outside 30-1200 seconds")]
    KeepAlive,
    #[error("unknown device or wrong password")]
    BadCredentials,
    #[error("timestamp too far from the server's time (sign type 1)")]
    StaleTimestamp,
    #[error("device is frozen")]
    Frozen,
    #[error("device requires TLS (secure_access) and connected without it")]
    TlsRequired,
    #[error("device does not authenticate with a secret")]
    NotSecretAuth,
    #[error("sub-devices connect through their gateway")]
    NotDirect,
    #[error("the same device id and secret are registered in more than one project")]
    Ambiguous,
    #[error("the server could not check the credentials")]
    Unavailable,
}

impl Refusal {
    /// The MQTT 3.1.1 CONNACK return code IoTDA answers with (spec §1.4, §6 Q5/Q6).
    pub fn return_code(self) -> u8 {
        match self {
            Refusal::ProtocolVersion => 0x01,
            Refusal::MalformedClientId | Refusal::KeepAlive => 0x02,
            Refusal::Unavailable => 0x03,
            Refusal::BadCredentials | Refusal::StaleTimestamp | Refusal::NotSecretAuth => 0x04,
            Refusal::Frozen | Refusal::TlsRequired | Refusal::NotDirect | Refusal::Ambiguous => {
                0x05
            }
        }
    }
}

/// `sign_type` of the client id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignType {
    /// HMAC-SHA256, timestamp not checked.
    Unchecked,
    /// HMAC-SHA256, timestamp checked against the server's time.
    Checked,
}

/// A parsed client id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId<'a> {
    pub device_id: &'a str,
    pub sign_type: SignType,
    /// The 10 digits `YYYYMMDDHH`, the HMAC key.
    pub timestamp: &'a str,
}

impl<'a> ClientId<'a> {
    /// Splits from the right; `id_type` must be 0 (device id), `sign_type` 0 or 1, the
    /// timestamp 10 ASCII digits, and the device id the username.
    pub fn parse(client_id: &'a str, username: &str) -> Result<ClientId<'a>, Refusal> {
        let mut parts = client_id.rsplitn(4, '_');
        let (Some(timestamp), Some(sign_type), Some(id_type), Some(device_id)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::MalformedClientId);
        };
        if timestamp.len() != 10 || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Refusal::MalformedClientId);
        }
        let sign_type = match sign_type {
            "0" => SignType::Unchecked,
            "1" => SignType::Checked,
            _ => return Err(Refusal::MalformedClientId),
        };
        // A device id no registry could hold is refused before any lookup.
        if id_type != "0" || !is_word_id(device_id, MAX_DEVICE_ID_CHARS) || device_id != username {
            return Err(Refusal::MalformedClientId);
        }
        Ok(ClientId {
            device_id,
            sign_type,
            timestamp,
        })
    }

    /// Sign type 1: the timestamp's hour within [`SIGN_TYPE_1_WINDOW_HOURS`] of `now`.
    /// Read leniently (hour 24 and past rolls over), as the C SDK may increment it as a
    /// number.
    pub fn timestamp_fresh(&self, now: Timestamp) -> bool {
        if self.sign_type == SignType::Unchecked {
            return true;
        }
        let Some(hours) = hours_since_epoch(self.timestamp) else {
            return false;
        };
        let now_hours = now.millis().div_euclid(3_600_000);
        (hours - now_hours).abs() <= SIGN_TYPE_1_WINDOW_HOURS
    }
}

/// `YYYYMMDDHH` as hours since the epoch; an hour of 24 or more counts on into the next
/// days.
fn hours_since_epoch(ts: &str) -> Option<i64> {
    let year: i32 = ts.get(0..4)?.parse().ok()?;
    let month: u8 = ts.get(4..6)?.parse().ok()?;
    let day: u8 = ts.get(6..8)?.parse().ok()?;
    let hour: i64 = ts.get(8..10)?.parse().ok()?;
    let month = time::Month::try_from(month).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let days = i64::from(date.to_julian_day() - 2_440_588);
    Some(days * 24 + hour)
}

/// IoTDA's password: lowercase hex HMAC-SHA256 with the timestamp as key and the secret
/// as message.
pub fn password(timestamp: &str, secret: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(timestamp.as_bytes()).expect("HMAC takes any key length");
    mac.update(secret.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Where a CONNECT arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Plain,
    Tls,
}

/// Picks, among the devices registered with the client id's device id (one per scope at
/// most), the one whose secret or secondary secret matches the password, and checks it
/// may connect.
pub fn authenticate(
    client: &ClientId<'_>,
    password_sent: &[u8],
    candidates: Vec<DeviceLogin>,
    transport: Transport,
    enforce_secure_access: bool,
    now: Timestamp,
) -> Result<DeviceLogin, Refusal> {
    if !client.timestamp_fresh(now) {
        return Err(Refusal::StaleTimestamp);
    }
    let mut matching = candidates.into_iter().filter(|d| {
        d.auth_type == AuthType::Secret
            && secrets_match(
                client.timestamp,
                d.secret.as_deref(),
                d.secondary_secret.as_deref(),
                password_sent,
            )
    });
    let Some(device) = matching.next() else {
        return Err(Refusal::BadCredentials);
    };
    if matching.next().is_some() {
        return Err(Refusal::Ambiguous);
    }
    if !device.is_direct {
        return Err(Refusal::NotDirect);
    }
    if device.status == DeviceStatus::Frozen {
        return Err(Refusal::Frozen);
    }
    if enforce_secure_access && device.secure_access && transport == Transport::Plain {
        return Err(Refusal::TlsRequired);
    }
    Ok(device)
}

/// Whether the password was made with the primary or the secondary secret. Both are
/// always compared, each in constant time, and the results combined without branching:
/// the time taken tells neither how much of the password was right nor which secret it
/// matched.
fn secrets_match(
    timestamp: &str,
    primary: Option<&str>,
    secondary: Option<&str>,
    sent: &[u8],
) -> bool {
    let primary = password_matches(timestamp, primary, sent);
    let secondary = password_matches(timestamp, secondary, sent);
    (primary | secondary).into()
}

fn password_matches(timestamp: &str, secret: Option<&str>, sent: &[u8]) -> Choice {
    match secret {
        // Constant time: the comparison must not tell an attacker how much of it was right.
        Some(secret) => password(timestamp, secret).as_bytes().ct_eq(sent),
        None => Choice::from(0),
    }
}

#[cfg(test)]
mod tests {
    use taskd_core::TaskScope;

    use super::*;

    #[test]
    fn passwords_match_the_spec_vectors() {
        assert_eq!(
            password("2025041401", "12345678"),
            "c75150e6cb841417396819e4d2ee4358a416344a03a083e3a8567074ddec820a"
        );
        assert_eq!(
            password("2026113008", "a1b2c3d4e5f6"),
            "08b76b0ffc9bd6839449d50c3d86fa93883f1b25275f2ee55a60fea8b5c09796"
        );
        assert_eq!(
            password("2026113015", "secret123"),
            "d7292cf445aaf552da73f59d26a2fc2358df203c9f9b692305eefd22e95af0dd"
        );
    }

    #[test]
    fn client_ids_parse_from_the_right() {
        let c = ClientId::parse("prod_node_1_0_1_2026113015", "prod_node_1").unwrap();
        assert_eq!(c.device_id, "prod_node_1");
        assert_eq!(c.sign_type, SignType::Checked);
        assert_eq!(c.timestamp, "2026113015");
        for bad in [
            "dev_0_0_202611301",    // 9 digits
            "dev_0_0_20261130150",  // 11 digits
            "dev_0_2_2026113015",   // SM3 not offered
            "dev_2_0_2026113015",   // node id type
            "dev_0_0_2026x13015",   // not digits
            "0_0_2026113015",       // no device id
            "other_0_0_2026113015", // not the username
            "dev",
            "de v_0_0_2026113015", // not a device id
        ] {
            assert_eq!(
                ClientId::parse(bad, "dev"),
                Err(Refusal::MalformedClientId),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_overlong_device_id_is_malformed() {
        let id = "d".repeat(MAX_DEVICE_ID_CHARS + 1);
        let client = format!("{id}_0_0_2026113015");
        assert_eq!(
            ClientId::parse(&client, &id),
            Err(Refusal::MalformedClientId)
        );
        let id = "d".repeat(MAX_DEVICE_ID_CHARS);
        let client = format!("{id}_0_0_2026113015");
        assert!(ClientId::parse(&client, &id).is_ok());
    }

    #[test]
    fn sign_type_1_is_lenient_within_two_hours_and_rolls_hour_24_over() {
        // 2026-11-30T15:00:00Z
        let now = Timestamp::from_millis(1_796_050_800_000);
        let at = |ts: &'static str| ClientId {
            device_id: "d",
            sign_type: SignType::Checked,
            timestamp: ts,
        };
        assert!(at("2026113015").timestamp_fresh(now));
        assert!(at("2026113017").timestamp_fresh(now));
        assert!(at("2026113013").timestamp_fresh(now));
        assert!(!at("2026113018").timestamp_fresh(now));
        assert!(!at("2026113012").timestamp_fresh(now));
        // The C SDK's hour 24 of the 30th is midnight of 1 December.
        let late = Timestamp::from_millis(1_796_083_200_000); // 2026-12-01T00:00:00Z
        assert!(at("2026113024").timestamp_fresh(late));
        assert!(!at("2026133015").timestamp_fresh(now));
        let unchecked = ClientId {
            sign_type: SignType::Unchecked,
            ..at("1999010100")
        };
        assert!(unchecked.timestamp_fresh(now));
    }

    fn login(scope: &str, secret: &str) -> DeviceLogin {
        DeviceLogin {
            scope: TaskScope::new(scope, ""),
            device_id: "dev".into(),
            auth_type: AuthType::Secret,
            secret: Some(secret.into()),
            secondary_secret: None,
            secure_access: false,
            status: DeviceStatus::Inactive,
            is_direct: true,
        }
    }

    #[test]
    fn the_secret_that_matches_picks_the_scope() {
        let now = Timestamp::from_millis(1_796_050_800_000);
        let client = ClientId::parse("dev_0_0_2026113015", "dev").unwrap();
        let sent = password("2026113015", "second-secret");
        let got = authenticate(
            &client,
            sent.as_bytes(),
            vec![login("p1", "first-secret"), login("p2", "second-secret")],
            Transport::Plain,
            true,
            now,
        )
        .unwrap();
        assert_eq!(got.scope.project_id, "p2");
        // Uppercase hex is not IoTDA's password.
        let upper = sent.to_uppercase();
        assert_eq!(
            authenticate(
                &client,
                upper.as_bytes(),
                vec![login("p2", "second-secret")],
                Transport::Plain,
                true,
                now
            ),
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            authenticate(
                &client,
                sent.as_bytes(),
                vec![login("p1", "second-secret"), login("p2", "second-secret")],
                Transport::Plain,
                true,
                now
            ),
            Err(Refusal::Ambiguous)
        );
    }

    #[test]
    fn the_secondary_secret_lets_the_device_in_as_the_primary_does() {
        let now = Timestamp::from_millis(1_796_050_800_000);
        let client = ClientId::parse("dev_0_0_2026113015", "dev").unwrap();
        let check = |d: DeviceLogin, secret: &str| {
            let sent = password("2026113015", secret);
            authenticate(
                &client,
                sent.as_bytes(),
                vec![d],
                Transport::Plain,
                true,
                now,
            )
            .map(|d| d.scope.project_id)
        };
        let mut both = login("p", "primary-secret");
        both.secondary_secret = Some("secondary-secret".into());
        assert_eq!(check(both.clone(), "primary-secret"), Ok("p".into()));
        assert_eq!(check(both.clone(), "secondary-secret"), Ok("p".into()));
        assert_eq!(
            check(both.clone(), "other-secret"),
            Err(Refusal::BadCredentials)
        );
        // Without a secondary secret only the primary one matches; a device without a
        // primary secret may still have a secondary one.
        assert_eq!(
            check(login("p", "primary-secret"), "secondary-secret"),
            Err(Refusal::BadCredentials)
        );
        let mut only_secondary = both.clone();
        only_secondary.secret = None;
        assert_eq!(
            check(only_secondary.clone(), "secondary-secret"),
            Ok("p".into())
        );
        assert_eq!(
            check(only_secondary, "primary-secret"),
            Err(Refusal::BadCredentials)
        );
        // A certificate device never matches, whatever secrets it holds.
        let mut cert = both.clone();
        cert.auth_type = AuthType::Certificates;
        assert_eq!(
            check(cert, "secondary-secret"),
            Err(Refusal::BadCredentials)
        );
        // The secondary secret picks the scope as the primary does, and the rules after
        // the password apply to it alike.
        let mut other = login("q", "unrelated-secret");
        other.secondary_secret = Some("secondary-secret".into());
        let sent = password("2026113015", "secondary-secret");
        assert_eq!(
            authenticate(
                &client,
                sent.as_bytes(),
                vec![login("p", "primary-secret"), other.clone()],
                Transport::Plain,
                true,
                now
            )
            .map(|d| d.scope.project_id),
            Ok("q".into())
        );
        assert_eq!(
            authenticate(
                &client,
                sent.as_bytes(),
                vec![both.clone(), other],
                Transport::Plain,
                true,
                now
            ),
            Err(Refusal::Ambiguous)
        );
        let mut frozen = both;
        frozen.status = DeviceStatus::Frozen;
        assert_eq!(check(frozen, "secondary-secret"), Err(Refusal::Frozen));
    }

    #[test]
    fn frozen_secure_and_sub_devices_are_refused_after_the_password() {
        let now = Timestamp::from_millis(1_796_050_800_000);
        let client = ClientId::parse("dev_0_0_2026113015", "dev").unwrap();
        let sent = password("2026113015", "s3cret-s3cret");
        let check = |d: DeviceLogin, t| {
            authenticate(&client, sent.as_bytes(), vec![d], t, true, now).map(|_| ())
        };
        let mut frozen = login("p", "s3cret-s3cret");
        frozen.status = DeviceStatus::Frozen;
        assert_eq!(check(frozen, Transport::Tls), Err(Refusal::Frozen));
        let mut secure = login("p", "s3cret-s3cret");
        secure.secure_access = true;
        assert_eq!(
            check(secure.clone(), Transport::Plain),
            Err(Refusal::TlsRequired)
        );
        assert_eq!(check(secure, Transport::Tls), Ok(()));
        let mut child = login("p", "s3cret-s3cret");
        child.is_direct = false;
        assert_eq!(check(child, Transport::Plain), Err(Refusal::NotDirect));
        assert_eq!(Refusal::Frozen.return_code(), 5);
        assert_eq!(Refusal::BadCredentials.return_code(), 4);
        assert_eq!(Refusal::KeepAlive.return_code(), 2);
    }
}
