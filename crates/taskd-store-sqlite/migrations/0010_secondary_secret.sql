-- taskd on SQLite, schema version 10: a device's secondary secret (IoTDA
-- ResetDeviceSecret with secret_type SECONDARY). The MQTT listener accepts a password made
-- with either secret; NULL: the device has none.
--
-- Never edit this file once released. Add 0011_... instead.

ALTER TABLE devices ADD COLUMN secondary_secret TEXT;
