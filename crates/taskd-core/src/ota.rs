//! OTA package records (IoTDA `CreateOtaPackage`): what an upgrade task will hand a
//! device, and where its bytes live.
//!
//! A package is a record only: taskd stores `file_location` as given (its `sign`
//! lowercased, spec Q19) and does not read the object yet (`docs/ota.md`). The field
//! rules ([`check_new_package`]) are the SDK's (`huaweicloudsdkiotda` `CreateOtaPackage`,
//! `ObsLocation`), written here so every caller holds a package to the same rules.

use crate::clock::Timestamp;
use crate::device::{MAX_APP_ID_CHARS, MAX_PRODUCT_ID_CHARS, is_word_id};
use crate::id::Id;
use crate::task::TaskScope;

/// At most this many packages per scope (project and instance): Huawei publishes no
/// limit; taskd's, so that one tenant can't fill the database (`docs/ota.md`).
pub const MAX_PACKAGES_PER_SCOPE: u32 = 10_000;
pub const MAX_MODULE_NAME_CHARS: usize = 64;
pub const MAX_VERSION_CHARS: usize = 256;
pub const MAX_SOURCE_VERSIONS: usize = 20;
pub const MAX_PACKAGE_DESCRIPTION_CHARS: usize = 1024;
pub const MAX_CUSTOM_INFO_CHARS: usize = 4096;
pub const MAX_REGION_NAME_CHARS: usize = 256;
pub const BUCKET_NAME_CHARS: std::ops::RangeInclusive<usize> = 3..=63;
pub const MAX_OBJECT_KEY_CHARS: usize = 1024;
/// The one signature method (`sign_method`), also its default.
pub const SIGN_METHOD_SHA256: &str = "SHA256";

/// What a package holds (IoTDA `package_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PackageType {
    Software,
    Firmware,
    Module,
}

impl PackageType {
    pub const ALL: [PackageType; 3] = [
        PackageType::Software,
        PackageType::Firmware,
        PackageType::Module,
    ];

    /// The stored name (also IoTDA's word).
    pub fn as_str(self) -> &'static str {
        match self {
            PackageType::Software => "softwarePackage",
            PackageType::Firmware => "firmwarePackage",
            PackageType::Module => "modulePackage",
        }
    }

    pub fn parse(s: &str) -> Option<PackageType> {
        PackageType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Where the package's bytes are: an OBS object (IoTDA `file_location.obs_location`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObsLocation {
    pub region_name: String,
    pub bucket_name: String,
    pub object_key: String,
    /// Always [`SIGN_METHOD_SHA256`] (the default when none is given).
    pub sign_method: String,
    /// The package's SHA-256, 64 lowercase hex digits ([`normalize_sign`]).
    pub sign: Option<String>,
}

/// A package to record, validated by [`check_new_package`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOtaPackage {
    pub scope: TaskScope,
    /// Resource space; `None` is the default space.
    pub app_id: Option<String>,
    pub package_type: PackageType,
    pub product_id: String,
    /// Only for [`PackageType::Module`].
    pub module_name: Option<String>,
    pub version: String,
    /// Empty: the package upgrades from any version.
    pub support_source_versions: Vec<String>,
    pub description: Option<String>,
    /// Pushed to the device in the upgrade event.
    pub custom_info: Option<String>,
    pub file_location: ObsLocation,
}

/// A recorded package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtaPackage {
    /// The package id (`package_id`, 24 hex digits) and paging key: from the task id
    /// allocator, so id order is creation order.
    pub id: Id,
    pub package: NewOtaPackage,
    pub created_at: Timestamp,
}

// ---- field rules ---------------------------------------------------------------------------

fn chars_in(s: &str, max: usize, ok: impl Fn(char) -> bool) -> bool {
    let n = s.chars().count();
    (1..=max).contains(&n) && s.chars().all(ok)
}

fn is_version_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// `^[A-Za-z0-9_.-]{1,256}$`: a version or a source version.
pub fn is_version(s: &str) -> bool {
    chars_in(s, MAX_VERSION_CHARS, is_version_char)
}

/// `^[A-Za-z0-9_.-]{1,64}$`.
pub fn is_module_name(s: &str) -> bool {
    chars_in(s, MAX_MODULE_NAME_CHARS, is_version_char)
}

/// 3-63 lowercase letters, digits, `-` and `.` (OBS bucket names).
pub fn is_bucket_name(s: &str) -> bool {
    BUCKET_NAME_CHARS.contains(&s.len())
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.'))
}

/// A SHA-256 as 64 hex digits of either case.
pub fn is_sign(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The stored (and echoed) form of a `sign`: lowercase, as device SDKs compare it
/// case-sensitively with the hash they compute (spec Q19).
pub fn normalize_sign(s: &str) -> String {
    s.to_ascii_lowercase()
}

fn text_within(s: &str, max: usize) -> bool {
    s.chars().count() <= max
}

/// Checks every field of a package to record; `Err` says which rule it breaks (IoTDA's
/// 400 `IOTDA.000006` in the dialect).
pub fn check_new_package(p: &NewOtaPackage) -> Result<(), String> {
    if let Some(a) = &p.app_id
        && !is_word_id(a, MAX_APP_ID_CHARS)
    {
        return Err(format!(
            "app_id must be 1-{MAX_APP_ID_CHARS} letters, digits, '_' or '-'."
        ));
    }
    if !is_word_id(&p.product_id, MAX_PRODUCT_ID_CHARS) {
        return Err(format!(
            "product_id must be 1-{MAX_PRODUCT_ID_CHARS} letters, digits, '_' or '-'."
        ));
    }
    match (&p.module_name, p.package_type) {
        (Some(_), PackageType::Software | PackageType::Firmware) => {
            return Err("module_name is only for package_type modulePackage.".into());
        }
        (Some(m), PackageType::Module) if !is_module_name(m) => {
            return Err(format!(
                "module_name must be 1-{MAX_MODULE_NAME_CHARS} letters, digits, '_', '-' or '.'."
            ));
        }
        _ => {}
    }
    if !is_version(&p.version) {
        return Err(format!(
            "version must be 1-{MAX_VERSION_CHARS} letters, digits, '_', '-' or '.'."
        ));
    }
    if p.support_source_versions.len() > MAX_SOURCE_VERSIONS {
        return Err(format!(
            "support_source_versions holds at most {MAX_SOURCE_VERSIONS} versions."
        ));
    }
    if !p.support_source_versions.iter().all(|v| is_version(v)) {
        return Err(format!(
            "support_source_versions: each must be 1-{MAX_VERSION_CHARS} letters, digits, '_', '-' or '.'."
        ));
    }
    if let Some(d) = &p.description
        && !text_within(d, MAX_PACKAGE_DESCRIPTION_CHARS)
    {
        return Err(format!(
            "description must be at most {MAX_PACKAGE_DESCRIPTION_CHARS} characters."
        ));
    }
    if let Some(c) = &p.custom_info
        && !text_within(c, MAX_CUSTOM_INFO_CHARS)
    {
        return Err(format!(
            "custom_info must be at most {MAX_CUSTOM_INFO_CHARS} characters."
        ));
    }
    check_obs_location(&p.file_location)
}

fn check_obs_location(l: &ObsLocation) -> Result<(), String> {
    if l.region_name.is_empty() || !text_within(&l.region_name, MAX_REGION_NAME_CHARS) {
        return Err(format!(
            "file_location.obs_location.region_name must be 1-{MAX_REGION_NAME_CHARS} characters."
        ));
    }
    if !is_bucket_name(&l.bucket_name) {
        return Err(
            "file_location.obs_location.bucket_name must be 3-63 lowercase letters, digits, '-' or '.'."
                .into(),
        );
    }
    if l.object_key.is_empty() || !text_within(&l.object_key, MAX_OBJECT_KEY_CHARS) {
        return Err(format!(
            "file_location.obs_location.object_key must be 1-{MAX_OBJECT_KEY_CHARS} characters."
        ));
    }
    if l.sign_method != SIGN_METHOD_SHA256 {
        return Err("file_location.obs_location.sign_method must be SHA256.".into());
    }
    match &l.sign {
        Some(s) if !is_sign(s) => Err(
            "file_location.obs_location.sign must be 64 hexadecimal characters (a SHA-256).".into(),
        ),
        Some(s) if *s != normalize_sign(s) => {
            Err("file_location.obs_location.sign must be stored lowercase.".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn new_package() -> NewOtaPackage {
        NewOtaPackage {
            scope: TaskScope::new("p", ""),
            app_id: Some("61f7e74d036aca5be29e1ed4".into()),
            package_type: PackageType::Firmware,
            product_id: "5ba24f5ebbe8f56f5a14f605".into(),
            module_name: None,
            version: "V2.0".into(),
            support_source_versions: vec!["V1.0".into(), "V1.1".into()],
            description: Some("package for version V1.0 and V1.1".into()),
            custom_info: Some("{\"k\": \"v\"}".into()),
            file_location: ObsLocation {
                region_name: "cn-north-4".into(),
                bucket_name: "abc".into(),
                object_key: "bbb/upgrade.bin".into(),
                sign_method: SIGN_METHOD_SHA256.into(),
                sign: Some("ab".repeat(32)),
            },
        }
    }

    fn refused(f: impl Fn(&mut NewOtaPackage)) -> bool {
        let mut p = new_package();
        f(&mut p);
        check_new_package(&p).is_err()
    }

    fn accepted(f: impl Fn(&mut NewOtaPackage)) -> bool {
        let mut p = new_package();
        f(&mut p);
        check_new_package(&p).is_ok()
    }

    #[test]
    fn package_types_round_trip() {
        for t in PackageType::ALL {
            assert_eq!(PackageType::parse(t.as_str()), Some(t));
        }
        assert_eq!(PackageType::parse("FirmwarePackage"), None);
        assert_eq!(PackageType::parse("firmware"), None);
    }

    #[test]
    fn the_docs_example_is_accepted() {
        assert_eq!(check_new_package(&new_package()), Ok(()));
        // Only the required fields.
        assert!(accepted(|p| {
            p.app_id = None;
            p.support_source_versions.clear();
            p.description = None;
            p.custom_info = None;
            p.file_location.sign = None;
        }));
    }

    #[test]
    fn ids_and_names() {
        assert!(refused(|p| p.app_id = Some("a.b".into())));
        assert!(refused(|p| p.app_id = Some("a".repeat(37))));
        assert!(accepted(|p| p.app_id = Some("a".repeat(36))));
        assert!(refused(|p| p.product_id = String::new()));
        assert!(refused(|p| p.product_id = "p".repeat(37)));
        assert!(refused(|p| p.product_id = "p/1".into()));
        assert!(accepted(|p| p.product_id = "p".repeat(36)));
    }

    #[test]
    fn module_name_only_for_module_packages() {
        assert!(refused(|p| p.module_name = Some("m1".into())));
        assert!(accepted(|p| {
            p.package_type = PackageType::Module;
            p.module_name = Some("m.1_a-b".into());
        }));
        assert!(accepted(|p| p.package_type = PackageType::Module));
        assert!(refused(|p| {
            p.package_type = PackageType::Module;
            p.module_name = Some("m".repeat(65));
        }));
        assert!(refused(|p| {
            p.package_type = PackageType::Module;
            p.module_name = Some("m 1".into());
        }));
    }

    #[test]
    fn versions() {
        assert!(accepted(|p| p.version = "v".repeat(256)));
        assert!(refused(|p| p.version = "v".repeat(257)));
        assert!(refused(|p| p.version = String::new()));
        assert!(refused(|p| p.version = "V 2".into()));
        assert!(refused(|p| p.version = "V2,0".into()));
        assert!(accepted(|p| {
            p.support_source_versions = (0..20).map(|i| format!("V1.{i}")).collect()
        }));
        assert!(refused(|p| {
            p.support_source_versions = (0..21).map(|i| format!("V1.{i}")).collect()
        }));
        assert!(refused(|p| p.support_source_versions = vec![String::new()]));
        assert!(refused(|p| p.support_source_versions = vec!["V1,0".into()]));
        assert!(refused(
            |p| p.support_source_versions = vec!["v".repeat(257)]
        ));
    }

    #[test]
    fn free_text_lengths_count_characters() {
        assert!(accepted(|p| p.description = Some("描".repeat(1024))));
        assert!(refused(|p| p.description = Some("d".repeat(1025))));
        assert!(accepted(|p| p.custom_info = Some("ü".repeat(4096))));
        assert!(refused(|p| p.custom_info = Some("c".repeat(4097))));
    }

    #[test]
    fn obs_location() {
        assert!(refused(|p| p.file_location.region_name = String::new()));
        assert!(refused(|p| p.file_location.region_name = "r".repeat(257)));
        assert!(accepted(|p| p.file_location.bucket_name = "a.b-c".into()));
        assert!(refused(|p| p.file_location.bucket_name = "ab".into()));
        assert!(accepted(|p| p.file_location.bucket_name = "b".repeat(63)));
        assert!(refused(|p| p.file_location.bucket_name = "b".repeat(64)));
        assert!(refused(|p| p.file_location.bucket_name = "Abc".into()));
        assert!(refused(|p| p.file_location.bucket_name = "a_bc".into()));
        assert!(refused(|p| p.file_location.object_key = String::new()));
        assert!(accepted(|p| p.file_location.object_key = "k".repeat(1024)));
        assert!(refused(|p| p.file_location.object_key = "k".repeat(1025)));
        assert!(refused(|p| p.file_location.sign_method = "MD5".into()));
        assert!(refused(|p| p.file_location.sign_method = "sha256".into()));
    }

    #[test]
    fn signs_are_64_hex_stored_lowercase() {
        let upper = "AB".repeat(32);
        assert!(is_sign(&upper));
        assert_eq!(normalize_sign(&upper), "ab".repeat(32));
        assert!(!is_sign(&"ab".repeat(31)));
        assert!(!is_sign(&format!("{}g", "a".repeat(63))));
        assert!(refused(|p| p.file_location.sign = Some("ab".repeat(33))));
        assert!(refused(|p| p.file_location.sign = Some("xy".repeat(32))));
        // Not normalized: the caller lowercases before the check.
        assert!(refused(|p| p.file_location.sign = Some(upper.clone())));
        assert!(accepted(
            |p| p.file_location.sign = Some(normalize_sign(&upper))
        ));
    }
}
