-- taskd on PostgreSQL, schema version 8: the device channel (MQTT, issue 12), the same
-- tables as crates/taskd-store-sqlite/migrations/0008_device_channel.sql. Devices
-- connect, report versions and properties; the platform keeps their shadows and the
-- messages waiting for them. Conventions as in 0002 (every table keyed by scope first).
--
-- Never edit this file once released. Add 0009_... instead.

-- What a device reports over its connection (`$ota` version_report, `$sdk_info`), at most
-- 256 characters each (`taskd_store::MAX_VERSION_CHARS`), and its connection times.
ALTER TABLE devices ADD COLUMN fw_version TEXT;
ALTER TABLE devices ADD COLUMN sw_version TEXT;
ALTER TABLE devices ADD COLUMN device_sdk_version TEXT;
-- The first connection (IoTDA `active_time`).
ALTER TABLE devices ADD COLUMN active_time BIGINT;
-- The last change between ONLINE and OFFLINE.
ALTER TABLE devices ADD COLUMN connection_status_update_time BIGINT;

-- A CONNECT names only the device id: the listener finds it across every scope.
CREATE INDEX devices_device_id ON devices (device_id);

-- One row per connected device: the node holding its connection. A newer connection
-- replaces the row; `session_id` tells a kicked connection's late close from the
-- current one's.
CREATE TABLE device_sessions (
    project_id TEXT COLLATE "C" NOT NULL,
    instance_id TEXT COLLATE "C" NOT NULL,
    device_id TEXT COLLATE "C" NOT NULL,
    session_id TEXT COLLATE "C" NOT NULL,
    node_id TEXT COLLATE "C" NOT NULL,
    connected_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, instance_id, device_id)
);

-- A node's sessions, closed together when it starts again or is found dead.
CREATE INDEX device_sessions_node ON device_sessions (node_id);

-- A device's shadow, one row per service: the desired and reported sections as JSON
-- object texts (merged in the store's Rust code, never by SQL).
CREATE TABLE device_shadows (
    project_id TEXT COLLATE "C" NOT NULL,
    instance_id TEXT COLLATE "C" NOT NULL,
    device_id TEXT COLLATE "C" NOT NULL,
    service_id TEXT COLLATE "C" NOT NULL,
    desired_json TEXT NOT NULL,
    desired_event_time BIGINT,
    reported_json TEXT NOT NULL,
    reported_event_time BIGINT,
    version BIGINT NOT NULL CHECK (version >= 0),
    PRIMARY KEY (project_id, instance_id, device_id, service_id)
);

-- Platform-to-device messages. `id` is the paging key from `registry_id_allocator`
-- (creation order); `message_id` is the user's, unique per device.
CREATE TABLE device_messages (
    project_id TEXT COLLATE "C" NOT NULL,
    instance_id TEXT COLLATE "C" NOT NULL,
    device_id TEXT COLLATE "C" NOT NULL,
    message_id TEXT COLLATE "C" NOT NULL,
    id BIGINT NOT NULL UNIQUE,
    name TEXT,
    message_json TEXT NOT NULL,
    encoding TEXT NOT NULL,
    payload_format TEXT NOT NULL,
    topic TEXT,
    topic_full_name TEXT,
    properties_json TEXT,
    status TEXT COLLATE "C" NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED', 'TIMEOUT')),
    error_code TEXT,
    error_msg TEXT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    expires_at BIGINT,
    PRIMARY KEY (project_id, instance_id, device_id, message_id),
    CHECK ((status = 'PENDING') = (finished_at IS NULL))
);

-- A device's messages newest first (listing, the purge of old final ones), and its
-- pending ones oldest first (delivery, the pending cap).
CREATE INDEX device_messages_device ON device_messages (project_id, instance_id, device_id, id);
CREATE INDEX device_messages_device_status
    ON device_messages (project_id, instance_id, device_id, status, id);
-- Expiry by maintenance: only pending messages with a ttl.
CREATE INDEX device_messages_expiry ON device_messages (expires_at)
    WHERE status = 'PENDING' AND expires_at IS NOT NULL;
