//! IoTDA's field rules (patterns and limits from Huawei's OpenAPI definitions and docs).
//! Patterns are checked by hand: each is one character class and a length range. The
//! device registry's field rules live in `taskd_core::device` (the engine checks task-file
//! rows by them too); the device helpers here call them.

use taskd_core::device;

/// Every task type any IoTDA source names: the SDK docstring, the OpenAPI pattern and the
/// newest docs (`changeGateway`). Where they disagree the union is accepted.
pub const TASK_TYPES: [&str; 18] = [
    "softwareUpgrade",
    "firmwareUpgrade",
    "moduleUpgrade",
    "createDevices",
    "deleteDevices",
    "freezeDevices",
    "unfreezeDevices",
    "createCommands",
    "createAsyncCommands",
    "createMessages",
    "updateDeviceShadows",
    "updateDevices",
    "sendEmails",
    "sendSmss",
    "addDevicesToGroup",
    "deviceConfig",
    "deviceJob",
    "changeGateway",
];

pub const MAX_TARGETS: usize = 30_000;
pub const MAX_BATCH_TARGETS: usize = 100;
pub const MAX_TASK_EXT_INFO_CHARS: usize = 512;
/// `targets_filter.group_ids`: Huawei names no limit; a scope holds at most this many
/// groups (`taskd_core::device::MAX_GROUPS_PER_SCOPE`), so more ids can't all be groups.
pub const MAX_FILTER_GROUPS: usize = device::MAX_GROUPS_PER_SCOPE as usize;
pub const MAX_SCHEDULE_AHEAD_DAYS: i64 = 7;
pub const RETRY_COUNT: std::ops::RangeInclusive<i64> = 1..=5;
pub const RETRY_INTERVAL_MINUTES: std::ops::RangeInclusive<i64> = 0..=1440;
pub const LIMIT: std::ops::RangeInclusive<i64> = 1..=50;
pub const OFFSET: std::ops::RangeInclusive<i64> = 0..=500;
pub const DEFAULT_LIMIT: u32 = 10;

fn word_chars(s: &str, max: usize, extra: impl Fn(char) -> bool) -> bool {
    let n = s.chars().count();
    (1..=max).contains(&n) && s.chars().all(|c| c.is_ascii_alphanumeric() || extra(c))
}

/// `^[a-zA-Z0-9_-]{1,128}$`: device ids (targets).
pub fn is_device_id(s: &str) -> bool {
    word_chars(s, 128, |c| c == '_' || c == '-')
}

/// `^[a-zA-Z0-9_-]{1,36}$`.
pub fn is_app_id(s: &str) -> bool {
    word_chars(s, 36, |c| c == '_' || c == '-')
}

/// `^[\u4e00-\u9fa5a-zA-Z0-9_]{1,128}$`.
pub fn is_task_name(s: &str) -> bool {
    word_chars(s, 128, |c| {
        c == '_' || ('\u{4e00}'..='\u{9fa5}').contains(&c)
    })
}

/// `^[a-fA-F0-9]{1,32}$`.
pub fn is_project_id(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `^[a-f0-9]{1,24}$`.
pub fn is_task_id(s: &str) -> bool {
    (1..=24).contains(&s.len()) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `^[a-fA-F0-9]{24}$`.
pub fn is_marker(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `^[a-zA-Z0-9_-]{1,128}$`.
pub fn is_file_id(s: &str) -> bool {
    is_device_id(s)
}

/// The `Instance-Id` header. Huawei's pattern is `[a-f0-9-]{1,36}` (unanchored), while
/// its own SDK examples send ids like `inst-0001`; taskd accepts 1-36 letters, digits
/// and `-`, which covers both.
pub fn is_instance_id(s: &str) -> bool {
    word_chars(s, 36, |c| c == '-')
}

pub fn is_task_type(s: &str) -> bool {
    TASK_TYPES.contains(&s)
}

pub fn is_upgrade(kind: &str) -> bool {
    matches!(
        kind,
        "firmwareUpgrade" | "softwareUpgrade" | "moduleUpgrade"
    )
}

/// `task_mode` and `task_ext_info` exist only for firmware and software upgrades.
pub fn takes_mode_and_ext_info(kind: &str) -> bool {
    matches!(kind, "firmwareUpgrade" | "softwareUpgrade")
}

/// Which target sources a task type takes (IoTDA docs: "targets applies to ...",
/// "document_source applies to ...").
pub fn takes_targets(kind: &str) -> bool {
    !matches!(kind, "createDevices" | "updateDevices")
}

pub fn takes_document_source(kind: &str) -> bool {
    !matches!(
        kind,
        "softwareUpgrade"
            | "firmwareUpgrade"
            | "moduleUpgrade"
            | "createCommands"
            | "createAsyncCommands"
            | "createMessages"
            | "updateDeviceShadows"
    )
}

/// `^[a-zA-Z0-9_-]{1,64}$`: node ids.
pub fn is_node_id(s: &str) -> bool {
    device::is_word_id(s, device::MAX_NODE_ID_CHARS)
}

/// `^[a-zA-Z0-9_-]{1,36}$`: product ids.
pub fn is_product_id(s: &str) -> bool {
    device::is_word_id(s, device::MAX_PRODUCT_ID_CHARS)
}

/// Device names: 1-256 Chinese characters, letters, digits and `_?'#().,&%@!-`.
pub fn is_device_name(s: &str) -> bool {
    device::is_device_text(s, device::MAX_DEVICE_NAME_CHARS)
}

/// Group names: 1-64 Chinese characters, letters, digits, spaces and `_?'#().,&%@!-`.
pub fn is_group_name(s: &str) -> bool {
    device::is_group_text(s, device::MAX_GROUP_NAME_CHARS)
}

/// At most 36 hexadecimal characters and `-`.
pub fn is_group_id(s: &str) -> bool {
    device::is_group_id(s)
}

/// `auth_info.timeout`: seconds, 0 (never expire) to 2^31 - 1.
pub const DEVICE_TIMEOUT: std::ops::RangeInclusive<i64> = 0..=2_147_483_647;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(is_device_id("dev-001_A"));
        assert!(!is_device_id("dev 1"));
        assert!(!is_device_id(""));
        assert!(is_device_id(&"a".repeat(128)));
        assert!(!is_device_id(&"a".repeat(129)));
        assert!(is_task_name("升级任务_1"));
        assert!(!is_task_name("task-1"));
        assert!(!is_task_name(&"名".repeat(129)));
        assert!(is_task_name(&"名".repeat(128)));
        assert!(is_project_id("0123456789abcdefABCDEF0123456789"));
        assert!(!is_project_id("0123456789abcdef0123456789abcdef0"));
        assert!(is_task_id("64b7f1a2c3d4e5f6a7b8c9d0"));
        assert!(!is_task_id("64B7F1A2C3D4E5F6A7B8C9D0"));
        assert!(is_marker("64B7F1A2C3D4E5F6A7B8C9D0"));
        assert!(!is_marker("64b7f1a2"));
        assert!(is_instance_id("inst-0001"));
        assert!(is_instance_id("a1b2c3d4-0000-1111-2222-333344445555"));
        assert!(!is_instance_id("inst_0001"));
        assert_eq!(TASK_TYPES.iter().filter(|t| is_task_type(t)).count(), 18);
    }

    /// A built-in executor's task type no dialect accepts would never run.
    #[test]
    fn iotda_accepts_every_built_in_task_type() {
        for kind in taskd_engine::executors::built_in_task_types() {
            assert!(is_task_type(kind), "{kind}");
        }
    }
}
