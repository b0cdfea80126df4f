//! IoTDA's topics (spec §2.1): what a device publishes, what taskd publishes to it, and
//! which topics and filters are a device's own.

/// `$oc/devices/{device_id}/`: every system and custom topic of a device starts so.
fn own_prefix(device_id: &str) -> String {
    format!("$oc/devices/{device_id}/")
}

/// What a device published, by topic (a `?…` query suffix removed first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uplink {
    PropertiesReport,
    GatewayPropertiesReport,
    MessageUp,
    EventsUp,
    CommandResponse(String),
    PropertiesSetResponse(String),
    PropertiesGetResponse(String),
    ShadowGet(String),
    /// `$oc/devices/{id}/user/…`: custom topics, accepted and not routed.
    Custom,
    /// Inside the device's namespace but no topic taskd knows.
    Unknown,
}

/// A device's publish, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub uplink: Uplink,
    /// `?encoding=gzip`: the payload is gzip-compressed (the Java SDK).
    pub gzip: bool,
}

/// Reads a topic a device published on; `None` if it is not the device's own (dropped
/// after its PUBACK, spec §6 Q20).
pub fn parse_uplink(device_id: &str, topic: &str) -> Option<Published> {
    let (path, query) = match topic.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (topic, None),
    };
    let rest = path.strip_prefix(&own_prefix(device_id))?;
    let gzip = query.is_some_and(|q| q.split('&').any(|kv| kv == "encoding=gzip"));
    let request_id = |prefix: &str| -> Option<String> {
        let tail = rest.strip_prefix(prefix)?;
        // Everything after the last `request_id=` (what the SDKs parse).
        let at = tail.rfind("request_id=")?;
        Some(tail[at + "request_id=".len()..].to_owned())
    };
    let uplink = match rest {
        "sys/properties/report" => Uplink::PropertiesReport,
        "sys/gateway/sub_devices/properties/report" => Uplink::GatewayPropertiesReport,
        "sys/messages/up" => Uplink::MessageUp,
        "sys/events/up" => Uplink::EventsUp,
        _ => {
            if let Some(id) = request_id("sys/commands/response/") {
                Uplink::CommandResponse(id)
            } else if let Some(id) = request_id("sys/properties/set/response/") {
                Uplink::PropertiesSetResponse(id)
            } else if let Some(id) = request_id("sys/properties/get/response/") {
                Uplink::PropertiesGetResponse(id)
            } else if let Some(id) = request_id("sys/shadow/get/") {
                Uplink::ShadowGet(id)
            } else if rest.starts_with("user/") {
                Uplink::Custom
            } else {
                Uplink::Unknown
            }
        }
    };
    Some(Published { uplink, gzip })
}

/// Whether a device may subscribe to `filter`: only within its own namespace
/// (`$oc/devices/{id}/…`), and a wildcard may not reach above it.
pub fn filter_allowed(device_id: &str, filter: &str) -> bool {
    let Some(rest) = filter.strip_prefix(&own_prefix(device_id)) else {
        return false;
    };
    !rest.is_empty() && valid_filter(filter)
}

/// MQTT's filter rules: `#` only as the last level, `+` and `#` only as whole levels.
fn valid_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.contains('#') && !l.contains('+'),
    })
}

/// Whether `topic` matches the MQTT filter `filter`.
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The downlinks every connected device is subscribed to without asking (spec §1.8):
/// the official Python and Java SDKs never send SUBSCRIBE.
pub fn auto_subscription(device_id: &str) -> String {
    format!("$oc/devices/{device_id}/sys/#")
}

pub fn command(device_id: &str, request_id: &str) -> String {
    format!("$oc/devices/{device_id}/sys/commands/request_id={request_id}")
}

pub fn properties_set(device_id: &str, request_id: &str) -> String {
    format!("$oc/devices/{device_id}/sys/properties/set/request_id={request_id}")
}

pub fn properties_get(device_id: &str, request_id: &str) -> String {
    format!("$oc/devices/{device_id}/sys/properties/get/request_id={request_id}")
}

pub fn shadow_get_response(device_id: &str, request_id: &str) -> String {
    format!("$oc/devices/{device_id}/sys/shadow/get/response/request_id={request_id}")
}

pub fn messages_down(device_id: &str) -> String {
    format!("$oc/devices/{device_id}/sys/messages/down")
}

pub fn events_down(device_id: &str) -> String {
    format!("$oc/devices/{device_id}/sys/events/down")
}

/// A message's custom topic: `topic` is a suffix under `$oc/devices/{id}/user/`.
pub fn user_topic(device_id: &str, suffix: &str) -> String {
    format!("$oc/devices/{device_id}/user/{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplinks_are_read_with_request_ids_and_queries() {
        let d = "prod_dev_1";
        let p = |t: &str| parse_uplink(d, t);
        assert_eq!(
            p("$oc/devices/prod_dev_1/sys/properties/report")
                .unwrap()
                .uplink,
            Uplink::PropertiesReport
        );
        let gz = p("$oc/devices/prod_dev_1/sys/properties/report?encoding=gzip").unwrap();
        assert!(gz.gzip);
        assert_eq!(
            p("$oc/devices/prod_dev_1/sys/commands/response/request_id=7b6c-1")
                .unwrap()
                .uplink,
            Uplink::CommandResponse("7b6c-1".into())
        );
        assert_eq!(
            p("$oc/devices/prod_dev_1/sys/properties/get/response/request_id=g1")
                .unwrap()
                .uplink,
            Uplink::PropertiesGetResponse("g1".into())
        );
        assert_eq!(
            p("$oc/devices/prod_dev_1/sys/shadow/get/request_id=s1")
                .unwrap()
                .uplink,
            Uplink::ShadowGet("s1".into())
        );
        assert_eq!(
            p("$oc/devices/prod_dev_1/sys/messages/up?request_id=9")
                .unwrap()
                .uplink,
            Uplink::MessageUp
        );
        assert_eq!(
            p("$oc/devices/prod_dev_1/user/temp").unwrap().uplink,
            Uplink::Custom
        );
        assert_eq!(
            p("$oc/devices/prod_dev_1/sys/unheard/of").unwrap().uplink,
            Uplink::Unknown
        );
        // Another device's topic, or one that only shares a prefix, is not its own.
        assert_eq!(p("$oc/devices/prod_dev_2/sys/properties/report"), None);
        assert_eq!(p("$oc/devices/prod_dev_10/sys/properties/report"), None);
        assert_eq!(p("other/topic"), None);
    }

    #[test]
    fn filters_stay_inside_the_device_namespace() {
        let d = "dev";
        assert!(filter_allowed(d, "$oc/devices/dev/sys/commands/#"));
        assert!(filter_allowed(d, "$oc/devices/dev/sys/properties/+/#"));
        assert!(filter_allowed(d, "$oc/devices/dev/user/a"));
        assert!(!filter_allowed(d, "$oc/devices/+/sys/commands/#"));
        assert!(!filter_allowed(d, "$oc/devices/other/sys/#"));
        assert!(!filter_allowed(d, "#"));
        assert!(!filter_allowed(d, "$oc/devices/dev/"));
        assert!(!filter_allowed(d, "$oc/devices/dev/sys/#/x"));
        assert!(!filter_allowed(d, "$oc/devices/dev/sys/a#"));
    }

    #[test]
    fn mqtt_matching() {
        assert!(matches(
            "$oc/devices/d/sys/#",
            "$oc/devices/d/sys/commands/request_id=1"
        ));
        assert!(matches(
            "$oc/devices/d/sys/commands/#",
            "$oc/devices/d/sys/commands/request_id=1"
        ));
        assert!(matches(
            "$oc/devices/d/sys/+/down",
            "$oc/devices/d/sys/messages/down"
        ));
        assert!(!matches(
            "$oc/devices/d/sys/+",
            "$oc/devices/d/sys/messages/down"
        ));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
    }
}
