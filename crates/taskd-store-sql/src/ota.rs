//! OTA package records: insert (with the per-scope limit), get, list, delete.
//!
//! A package's id comes from the task id allocator (`tasks::ALLOCATE_SQL`), so package
//! ids are task-like 24-hex ids, never equal to a task's, and id order is creation order.
//! Locks, in this order: the scope's package key lock (inserts: the per-scope limit),
//! then the allocator row (as a task insert takes it: first and alone), held until
//! commit. Nothing here touches a task row or the package's object.

use taskd_core::{Id, NewOtaPackage, ObsLocation, OtaPackage, PackageType, TaskScope, Timestamp};
use taskd_store::{OtaPackageInsertOutcome, OtaPackageListParams, Page, StoreResult};

use crate::corrupt;
use crate::devices::space_key;
use crate::driver::{Arg, Conn, Driver, KeyLock, Stmt, Tx};
use crate::registry::page_and_count;
use crate::tasks::ALLOCATE_SQL;

/// The columns of [`PackageRow`], for `SELECT`s.
macro_rules! package_columns {
    () => {
        "id, project_id, instance_id, app_id, package_type, product_id, module_name, version, \
         support_source_versions, description, custom_info, region_name, bucket_name, \
         object_key, sign_method, sign, created_at"
    };
}

#[derive(Debug, sqlx::FromRow)]
pub struct PackageRow {
    id: i64,
    project_id: String,
    instance_id: String,
    app_id: String,
    package_type: String,
    product_id: String,
    module_name: Option<String>,
    version: String,
    support_source_versions: String,
    description: Option<String>,
    custom_info: Option<String>,
    region_name: String,
    bucket_name: String,
    object_key: String,
    sign_method: String,
    sign: Option<String>,
    created_at: i64,
}

/// The stored form of a source version list (see migration 0011): joined with `,`,
/// which no version holds.
fn join_versions(versions: &[String]) -> String {
    versions.join(",")
}

fn split_versions(stored: &str) -> Vec<String> {
    if stored.is_empty() {
        Vec::new()
    } else {
        stored.split(',').map(str::to_owned).collect()
    }
}

impl PackageRow {
    fn into_package(self) -> StoreResult<OtaPackage> {
        let id = Id(self.id);
        let package_type = PackageType::parse(&self.package_type).ok_or_else(|| {
            corrupt(format!(
                "package {id}: unknown package type {:?}",
                self.package_type
            ))
        })?;
        Ok(OtaPackage {
            id,
            package: NewOtaPackage {
                scope: TaskScope::new(self.project_id, self.instance_id),
                app_id: (!self.app_id.is_empty()).then_some(self.app_id),
                package_type,
                product_id: self.product_id,
                module_name: self.module_name,
                version: self.version,
                support_source_versions: split_versions(&self.support_source_versions),
                description: self.description,
                custom_info: self.custom_info,
                file_location: ObsLocation {
                    region_name: self.region_name,
                    bucket_name: self.bucket_name,
                    object_key: self.object_key,
                    sign_method: self.sign_method,
                    sign: self.sign,
                },
            },
            created_at: Timestamp(self.created_at),
        })
    }
}

const PACKAGE_COUNT_SQL: &str =
    "SELECT COUNT(*) FROM ota_packages WHERE project_id = $1 AND instance_id = $2";

pub async fn insert<D: Driver>(
    driver: &D,
    new: NewOtaPackage,
    max_packages: u32,
    now: Timestamp,
) -> StoreResult<OtaPackageInsertOutcome> {
    let scope = &new.scope;
    let mut tx = driver.begin_write().await?;
    // Package inserts in one scope take turns (on every node) until commit: two of them
    // can't both take the last slot.
    D::lock_key(
        &mut tx,
        KeyLock::Packages,
        &[&scope.project_id, &scope.instance_id],
    )
    .await?;
    let count = tx
        .fetch_int(
            Stmt::new(PACKAGE_COUNT_SQL)
                .bind(&scope.project_id)
                .bind(&scope.instance_id),
        )
        .await?;
    if count >= i64::from(max_packages) {
        return tx.give_up(OtaPackageInsertOutcome::LimitReached).await;
    }
    let id = Id(tx
        .fetch_int(
            Stmt::new(ALLOCATE_SQL)
                .bind(Id::floor_at(now.0).0)
                .bind(0i64),
        )
        .await?);
    let versions = join_versions(&new.support_source_versions);
    let l = &new.file_location;
    tx.execute(
        Stmt::new(
            "INSERT INTO ota_packages (project_id, instance_id, id, app_id, package_type, \
             product_id, module_name, version, support_source_versions, description, \
             custom_info, region_name, bucket_name, object_key, sign_method, sign, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .bind(id.0)
        .bind(space_key(new.app_id.as_deref()))
        .bind(new.package_type.as_str())
        .bind(&new.product_id)
        .bind(&new.module_name)
        .bind(&new.version)
        .bind(&versions)
        .bind(&new.description)
        .bind(&new.custom_info)
        .bind(&l.region_name)
        .bind(&l.bucket_name)
        .bind(&l.object_key)
        .bind(&l.sign_method)
        .bind(&l.sign)
        .bind(now.0),
    )
    .await?;
    tx.commit().await?;
    Ok(OtaPackageInsertOutcome::Inserted(OtaPackage {
        id,
        package: new,
        created_at: now,
    }))
}

pub async fn get<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    id: Id,
) -> StoreResult<Option<OtaPackage>> {
    let row: Option<PackageRow> = driver
        .read()
        .await?
        .fetch_optional(
            Stmt::new(concat!(
                "SELECT ",
                package_columns!(),
                " FROM ota_packages WHERE project_id = $1 AND instance_id = $2 AND id = $3"
            ))
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(id.0),
        )
        .await?;
    row.map(PackageRow::into_package).transpose()
}

/// Which filters a package listing has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackageShape {
    pub app: bool,
    pub package_type: bool,
    pub product: bool,
    pub version: bool,
}

impl PackageShape {
    fn flags(self) -> [(bool, &'static str); 4] {
        [
            (self.app, "app_id ="),
            (self.package_type, "package_type ="),
            (self.product, "product_id ="),
            (self.version, "version ="),
        ]
    }

    /// The filters' conditions, numbered from `$first`.
    fn conditions(self, first: usize) -> String {
        let mut n = first;
        let mut sql = String::new();
        for (on, cond) in self.flags() {
            if on {
                sql.push_str(&format!(" AND {cond} ${n}"));
                n += 1;
            }
        }
        sql
    }

    fn count(self) -> usize {
        self.flags().into_iter().filter(|(on, _)| *on).count()
    }
}

/// A page: scope `$1`, `$2`, marker `$3`, the filters, then limit and offset.
pub fn package_list_sql(s: PackageShape) -> String {
    let n = 4 + s.count();
    format!(
        concat!(
            "SELECT ",
            package_columns!(),
            " FROM ota_packages WHERE project_id = $1 AND instance_id = $2 AND id < $3{} \
             ORDER BY id DESC LIMIT ${} OFFSET ${}"
        ),
        s.conditions(4),
        n,
        n + 1
    )
}

/// The listing's count: scope `$1`, `$2`, then the filters (no marker: `page.count` is
/// every matching package).
pub fn package_count_sql(s: PackageShape) -> String {
    format!(
        "SELECT COUNT(*) FROM ota_packages WHERE project_id = $1 AND instance_id = $2{}",
        s.conditions(3)
    )
}

pub async fn list<D: Driver>(
    driver: &D,
    params: &OtaPackageListParams,
) -> StoreResult<Page<OtaPackage>> {
    let OtaPackageListParams {
        scope,
        filter: f,
        page,
    } = params;
    let shape = PackageShape {
        app: f.app_id.is_some(),
        package_type: f.package_type.is_some(),
        product: f.product_id.is_some(),
        version: f.version.is_some(),
    };
    let filters: Vec<Arg<'_>> = [
        f.app_id.as_deref(),
        f.package_type.map(PackageType::as_str),
        f.product_id.as_deref(),
        f.version.as_deref(),
    ]
    .into_iter()
    .flatten()
    .map(Arg::Text)
    .collect();
    let (page_stmt, count_stmt) = page_and_count(
        package_list_sql(shape),
        package_count_sql(shape),
        scope,
        page,
        &filters,
    );
    let mut tx = driver.begin_read().await?;
    let rows: Vec<PackageRow> = tx.fetch_all(page_stmt).await?;
    let count = tx.fetch_int(count_stmt).await?;
    tx.commit().await?;
    Ok(Page {
        items: rows
            .into_iter()
            .map(PackageRow::into_package)
            .collect::<StoreResult<Vec<_>>>()?,
        count,
    })
}

pub async fn delete<D: Driver>(driver: &D, scope: &TaskScope, id: Id) -> StoreResult<bool> {
    let mut tx = driver.begin_write().await?;
    let n = tx
        .execute(
            Stmt::new(
                "DELETE FROM ota_packages WHERE project_id = $1 AND instance_id = $2 AND id = $3",
            )
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(id.0),
        )
        .await?;
    tx.commit().await?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_join_and_split_exactly() {
        for v in [
            vec![],
            vec!["V1.0".to_owned()],
            vec!["a".into(), "b_c-d.e".into()],
        ] {
            assert_eq!(split_versions(&join_versions(&v)), v);
        }
    }

    #[test]
    fn list_statements_number_their_parameters() {
        let all = PackageShape {
            app: true,
            package_type: true,
            product: true,
            version: true,
        };
        let sql = package_list_sql(all);
        assert!(
            sql.contains("version = $7 ORDER BY id DESC LIMIT $8 OFFSET $9"),
            "{sql}"
        );
        let sql = package_count_sql(PackageShape {
            product: true,
            ..Default::default()
        });
        assert!(sql.ends_with("AND product_id = $3"), "{sql}");
    }
}
