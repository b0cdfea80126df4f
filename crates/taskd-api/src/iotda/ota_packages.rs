//! OTA package records: `/v5/iot/{project_id}/ota-upgrades/packages[/{package_id}]`
//! (CreateOtaPackage, ListOtaPackageInfo, ShowOtaPackage, DeleteOtaPackage).
//!
//! A package is a record: `file_location` is stored and echoed as given (its `sign`
//! lowercased); taskd does not read the object, and a delete does not touch it
//! (`docs/ota.md`). The store calls are the registry-like direct writes of the
//! architecture's invariants: no task work.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use taskd_core::device::{MAX_PRODUCT_ID_CHARS, is_word_id};
use taskd_core::ota::{
    MAX_PACKAGES_PER_SCOPE, SIGN_METHOD_SHA256, check_new_package, is_version, normalize_sign,
};
use taskd_core::{Id, NewOtaPackage, ObsLocation, PackageType, TaskScope};
use taskd_store::{OtaPackageFilter, OtaPackageInsertOutcome, OtaPackageListParams};

use super::batch_tasks::{app_id_filter, invalid, page_request, parse_json, parse_query};
use super::error::IotdaError;
use super::wire::{ListOtaPackagesView, OtaPackageView, PageView};
use super::{IotdaScope, Path};
use crate::AppState;

#[derive(Deserialize)]
pub(crate) struct CreateOtaPackageBody {
    app_id: Option<String>,
    package_type: Option<String>,
    product_id: Option<String>,
    module_name: Option<String>,
    version: Option<String>,
    support_source_versions: Option<Vec<String>>,
    description: Option<String>,
    custom_info: Option<String>,
    file_location: Option<FileLocationBody>,
}

#[derive(Deserialize)]
struct FileLocationBody {
    obs_location: Option<ObsLocationBody>,
}

#[derive(Deserialize)]
struct ObsLocationBody {
    region_name: Option<String>,
    bucket_name: Option<String>,
    object_key: Option<String>,
    sign_method: Option<String>,
    sign: Option<String>,
}

fn package_types() -> String {
    PackageType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn required(value: Option<String>, name: &str) -> Result<String, IotdaError> {
    value.ok_or_else(|| invalid(format!("{name} is required.")))
}

/// Validates a CreateOtaPackage body against every rule (`taskd_core::ota`); nothing is
/// written unless this succeeds. The `sign` is lowercased here, before the check.
pub(crate) fn new_package(
    scope: TaskScope,
    body: CreateOtaPackageBody,
) -> Result<NewOtaPackage, IotdaError> {
    let package_type = required(body.package_type, "package_type")?;
    let package_type = PackageType::parse(&package_type).ok_or_else(|| {
        invalid(format!(
            "package_type {package_type} is not supported; use one of {}.",
            package_types()
        ))
    })?;
    let obs = body
        .file_location
        .and_then(|f| f.obs_location)
        .ok_or_else(|| invalid("file_location.obs_location is required."))?;
    let package = NewOtaPackage {
        scope,
        app_id: body.app_id,
        package_type,
        product_id: required(body.product_id, "product_id")?,
        module_name: body.module_name,
        version: required(body.version, "version")?,
        support_source_versions: body.support_source_versions.unwrap_or_default(),
        description: body.description,
        custom_info: body.custom_info,
        file_location: ObsLocation {
            region_name: required(obs.region_name, "file_location.obs_location.region_name")?,
            bucket_name: required(obs.bucket_name, "file_location.obs_location.bucket_name")?,
            object_key: required(obs.object_key, "file_location.obs_location.object_key")?,
            sign_method: obs.sign_method.unwrap_or_else(|| SIGN_METHOD_SHA256.into()),
            sign: obs.sign.map(|s| normalize_sign(&s)),
        },
    };
    check_new_package(&package).map_err(invalid)?;
    Ok(package)
}

pub async fn create(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    body: Bytes,
) -> Result<Response, IotdaError> {
    if body.is_empty() {
        return Err(IotdaError::MalformedBody("A JSON body is required.".into()));
    }
    let package = new_package(scope, parse_json(&body)?)?;
    match state
        .store
        .ota_package_insert(package, MAX_PACKAGES_PER_SCOPE, state.clock.now())
        .await?
    {
        OtaPackageInsertOutcome::Inserted(p) => {
            Ok((StatusCode::CREATED, Json(OtaPackageView::full(&p))).into_response())
        }
        OtaPackageInsertOutcome::LimitReached => {
            Err(IotdaError::PackageLimitReached(MAX_PACKAGES_PER_SCOPE))
        }
    }
}

/// A package id in a path: a string that is not one of taskd's ids names no package
/// (404, as an unknown one), like batch task ids.
fn path_package_id(raw: &str) -> Result<Id, IotdaError> {
    Id::parse_exact(raw).ok_or(IotdaError::PackageNotFound)
}

pub async fn show(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id)): Path<(String, String)>,
) -> Result<Response, IotdaError> {
    let id = path_package_id(&raw_id)?;
    let package = state
        .store
        .ota_package_get(&scope, id)
        .await?
        .ok_or(IotdaError::PackageNotFound)?;
    Ok(Json(OtaPackageView::full(&package)).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    RawQuery(raw): RawQuery,
) -> Result<Response, IotdaError> {
    let query = parse_query(raw.as_deref())?;
    let page = page_request(&query)?;
    let mut filter = OtaPackageFilter {
        app_id: app_id_filter(&query)?,
        ..OtaPackageFilter::default()
    };
    if let Some(t) = query.get("package_type") {
        filter.package_type = Some(PackageType::parse(t).ok_or_else(|| {
            invalid(format!(
                "package_type {t} is not supported; use one of {}.",
                package_types()
            ))
        })?);
    }
    if let Some(product_id) = query.get("product_id") {
        if !is_word_id(product_id, MAX_PRODUCT_ID_CHARS) {
            return Err(invalid(
                "product_id must be 1-36 letters, digits, '_' or '-'.",
            ));
        }
        filter.product_id = Some(product_id.to_string());
    }
    if let Some(version) = query.get("version") {
        if !is_version(version) {
            return Err(invalid(
                "version must be 1-256 letters, digits, '_', '-' or '.'.",
            ));
        }
        filter.version = Some(version.to_string());
    }
    let result = state
        .store
        .ota_package_list(&OtaPackageListParams {
            scope,
            filter,
            page,
        })
        .await?;
    let marker = result.items.last().map(|p| p.id.to_string());
    Ok(Json(ListOtaPackagesView {
        packages: result.items.iter().map(OtaPackageView::info).collect(),
        page: PageView {
            count: result.count,
            marker,
        },
    })
    .into_response())
}

/// Deletes the record only: the object stays where it is, and batch tasks naming the
/// package keep their documents (docs/ota.md).
pub async fn delete(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id)): Path<(String, String)>,
) -> Result<Response, IotdaError> {
    let id = path_package_id(&raw_id)?;
    if !state.store.ota_package_delete(&scope, id).await? {
        return Err(IotdaError::PackageNotFound);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
