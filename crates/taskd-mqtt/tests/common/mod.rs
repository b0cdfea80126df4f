//! What the listener and routing tests share: registering a device.

use taskd_core::{AuthType, NewDevice, TaskScope, Timestamp};
use taskd_store::Store;

/// Registers a secret-authenticated device whose node id is its device id.
pub async fn insert_device(
    store: &dyn Store,
    scope: &TaskScope,
    device_id: &str,
    secret: &str,
    secure_access: bool,
    now: Timestamp,
) {
    store
        .device_insert(
            NewDevice {
                scope: scope.clone(),
                device_id: device_id.into(),
                node_id: device_id.into(),
                product_id: "prod".into(),
                device_name: None,
                description: None,
                gateway_id: None,
                app_id: None,
                auth_type: AuthType::Secret,
                secret: Some(secret.into()),
                fingerprint: None,
                secure_access,
                timeout: 0,
                extension_info_json: None,
            },
            now,
        )
        .await
        .unwrap()
        .unwrap();
}
