//! OTA package records: listing parameters and the insert's outcome.

use taskd_core::{OtaPackage, PackageType, TaskScope};

use crate::PageRequest;

/// Package listing filters (IoTDA ListOtaPackageInfo); every one given must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OtaPackageFilter {
    /// A resource space; the default space can't be named.
    pub app_id: Option<String>,
    pub package_type: Option<PackageType>,
    pub product_id: Option<String>,
    /// Exact version.
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtaPackageListParams {
    pub scope: TaskScope,
    pub filter: OtaPackageFilter,
    pub page: PageRequest,
}

#[expect(
    clippy::large_enum_variant,
    reason = "one per create request, moved once: boxing the package would buy nothing"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtaPackageInsertOutcome {
    Inserted(OtaPackage),
    /// The scope already holds `max_packages` packages; nothing was stored.
    LimitReached,
}
