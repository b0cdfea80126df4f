-- taskd on PostgreSQL, schema version 2: the device registry, the same tables as the
-- SQLite backend (crates/taskd-store-sqlite/migrations/0002_devices.sql) in PostgreSQL's
-- types. Conventions as in 0001; besides:
-- * every table is keyed by scope (project_id, instance_id) first: a device id or group
--   id is unique within its scope, and nothing looks outside it;
-- * app_id is '' for the default resource space (so it can sit in unique keys);
-- * `id` is each record's paging key (IoTDA `page.marker`) from `registry_id_allocator`,
--   time-ordered like task ids, on a row of its own: a runner applying a registry effect
--   holds task rows, and taking the task allocator after them could deadlock with a
--   task insert (which takes the allocator first).
--
-- Never edit this file once released. Add 0003_... instead.

CREATE TABLE registry_id_allocator (
    singleton SMALLINT NOT NULL PRIMARY KEY CHECK (singleton = 0),
    last_id BIGINT NOT NULL
);
INSERT INTO registry_id_allocator (singleton, last_id) VALUES (0, 0);

CREATE TABLE devices (
    project_id TEXT COLLATE "C" NOT NULL,
    instance_id TEXT COLLATE "C" NOT NULL,
    device_id TEXT COLLATE "C" NOT NULL,
    id BIGINT NOT NULL UNIQUE,
    node_id TEXT COLLATE "C" NOT NULL,
    product_id TEXT COLLATE "C" NOT NULL,
    device_name TEXT COLLATE "C",
    description TEXT,
    -- The parent device; the device itself when directly connected.
    gateway_id TEXT COLLATE "C" NOT NULL,
    -- The directly connected device at the top of the chain (itself when direct), and
    -- how far below it the device is: a cascading sub-device listing is one index range.
    root_id TEXT COLLATE "C" NOT NULL,
    level BIGINT NOT NULL CHECK (level BETWEEN 0 AND 2),
    app_id TEXT COLLATE "C" NOT NULL,
    auth_type TEXT NOT NULL CHECK (auth_type IN ('SECRET', 'CERTIFICATES')),
    secret TEXT,
    fingerprint TEXT,
    secure_access BOOLEAN NOT NULL,
    timeout BIGINT NOT NULL CHECK (timeout >= 0),
    extension_info_json TEXT,
    status TEXT NOT NULL CHECK (status IN ('ONLINE', 'OFFLINE', 'ABNORMAL', 'INACTIVE', 'FROZEN')),
    -- Set while FROZEN: the status unfreezing returns to.
    status_before_freeze TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, instance_id, device_id),
    CHECK ((status = 'FROZEN') = (status_before_freeze IS NOT NULL))
);

-- Listing is `WHERE project_id = $1 AND instance_id = $2 [AND filter = $n] AND id < $3
-- ORDER BY id DESC`: one index per filter, as for tasks. Counts run over the same range:
-- device filters are free-form (names, node ids), so no counter table could answer them.
CREATE INDEX devices_scope ON devices (project_id, instance_id, id);
CREATE INDEX devices_scope_product ON devices (project_id, instance_id, product_id, id);
CREATE INDEX devices_scope_node ON devices (project_id, instance_id, node_id, id);
CREATE INDEX devices_scope_name ON devices (project_id, instance_id, device_name, id);
CREATE INDEX devices_scope_gateway ON devices (project_id, instance_id, gateway_id, id);
CREATE INDEX devices_scope_root ON devices (project_id, instance_id, root_id, id);
CREATE INDEX devices_scope_app ON devices (project_id, instance_id, app_id, id);

CREATE TABLE device_groups (
    project_id TEXT COLLATE "C" NOT NULL,
    instance_id TEXT COLLATE "C" NOT NULL,
    group_id TEXT COLLATE "C" NOT NULL,
    id BIGINT NOT NULL UNIQUE,
    name TEXT COLLATE "C" NOT NULL,
    description TEXT,
    super_group_id TEXT COLLATE "C",
    -- 1 for a top-level group; at most 5.
    depth BIGINT NOT NULL CHECK (depth BETWEEN 1 AND 5),
    app_id TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    -- Last change: creation, a member added or removed.
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, instance_id, group_id)
);

-- A name is unique in its resource space.
CREATE UNIQUE INDEX device_groups_name ON device_groups (project_id, instance_id, app_id, name);
CREATE INDEX device_groups_scope ON device_groups (project_id, instance_id, id);
CREATE INDEX device_groups_scope_app ON device_groups (project_id, instance_id, app_id, id);
-- "Does this group have children?" before a delete.
CREATE INDEX device_groups_parent ON device_groups (project_id, instance_id, super_group_id);

-- Written only with both ends locked in the same transaction, and deleted with either.
CREATE TABLE device_group_members (
    project_id TEXT COLLATE "C" NOT NULL,
    instance_id TEXT COLLATE "C" NOT NULL,
    group_id TEXT COLLATE "C" NOT NULL,
    device_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (project_id, instance_id, group_id, device_id)
);

-- A device's groups: its limit of 10, and removal when the device is deleted.
CREATE INDEX device_group_members_device
    ON device_group_members (project_id, instance_id, device_id, group_id);
