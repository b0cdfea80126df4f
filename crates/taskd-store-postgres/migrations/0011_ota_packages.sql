-- taskd on PostgreSQL, schema version 11: OTA package records (IoTDA CreateOtaPackage,
-- docs/ota.md). The same table as crates/taskd-store-sqlite/migrations/0011_ota_packages.sql
-- in PostgreSQL's types. Keyed by scope like tasks; `id` is the package id (`package_id`,
-- 24 hex digits on the wire) from the task id allocator, and the listing's paging key.
-- * app_id is '' for the default resource space, as in the device registry;
-- * support_source_versions is the versions joined with ',' ('' for none): a version
--   holds only letters, digits, '_', '-' and '.', so the join is exact;
-- * file_location is stored as given (sign lowercased); taskd does not read the object.
--
-- Never edit this file once released. Add 0012_... instead.

CREATE TABLE ota_packages (
    project_id TEXT COLLATE "C" NOT NULL,
    instance_id TEXT COLLATE "C" NOT NULL,
    id BIGINT NOT NULL UNIQUE,
    app_id TEXT COLLATE "C" NOT NULL,
    package_type TEXT NOT NULL
        CHECK (package_type IN ('softwarePackage', 'firmwarePackage', 'modulePackage')),
    product_id TEXT COLLATE "C" NOT NULL,
    module_name TEXT,
    version TEXT COLLATE "C" NOT NULL,
    support_source_versions TEXT NOT NULL,
    description TEXT,
    custom_info TEXT,
    region_name TEXT NOT NULL,
    bucket_name TEXT NOT NULL,
    object_key TEXT NOT NULL,
    sign_method TEXT NOT NULL,
    sign TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, instance_id, id)
);

-- The filters a listing most often has: a resource space, a product.
CREATE INDEX ota_packages_scope_app ON ota_packages (project_id, instance_id, app_id, id);
CREATE INDEX ota_packages_scope_product
    ON ota_packages (project_id, instance_id, product_id, id);
