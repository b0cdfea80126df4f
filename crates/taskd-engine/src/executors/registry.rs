//! The registry executor: what one sub-task of `createDevices`, `deleteDevices`,
//! `freezeDevices`, `unfreezeDevices` or `updateDevices` does to the device registry.
//!
//! A pure mapping from the sub-task (its task's type and scope, its target, its input) to
//! a [`DeviceEffect`]; [`Engine::run_batch`](crate::Engine::run_batch) applies the effect
//! in the transaction that records the sub-task's result. A sub-task whose input can't
//! describe a valid effect (a bad task-file row) fails as
//! [`SubTaskErrorKind::InvalidInput`]; an effect the registry refuses fails with the
//! store's refusal.

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::Arc;
use taskd_core::device::{
    MAX_DEVICE_ID_CHARS, check_device_update, check_new_device, default_device_id, is_word_id,
};
use taskd_core::{AuthType, DeviceUpdate, NewDevice, TaskScope};

use taskd_core::SubTaskState;
use taskd_store::{ClaimedSubTask, DeviceEffect, ReportOutcome};

use crate::device_channel::DeviceChannel;

use super::{Executed, Executor, TaskTypes};
use crate::SubTaskErrorKind;

/// The registry's task types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistryTaskType {
    CreateDevices,
    DeleteDevices,
    FreezeDevices,
    UnfreezeDevices,
    UpdateDevices,
}

impl TaskTypes for RegistryTaskType {
    const ALL: &'static [Self] = &[
        RegistryTaskType::CreateDevices,
        RegistryTaskType::DeleteDevices,
        RegistryTaskType::FreezeDevices,
        RegistryTaskType::UnfreezeDevices,
        RegistryTaskType::UpdateDevices,
    ];

    fn name(self) -> &'static str {
        match self {
            RegistryTaskType::CreateDevices => "createDevices",
            RegistryTaskType::DeleteDevices => "deleteDevices",
            RegistryTaskType::FreezeDevices => "freezeDevices",
            RegistryTaskType::UnfreezeDevices => "unfreezeDevices",
            RegistryTaskType::UpdateDevices => "updateDevices",
        }
    }
}

/// taskd's own executor of the registry task types, on every node.
#[derive(Clone, Default)]
pub struct Registry {
    /// Closes the connections of devices a sub-task froze or deleted.
    channel: Option<Arc<dyn DeviceChannel>>,
}

impl Registry {
    /// The registry executor of a server that holds device connections.
    pub fn with_channel(channel: Arc<dyn DeviceChannel>) -> Self {
        Registry {
            channel: Some(channel),
        }
    }
}

impl Executor for Registry {
    type TaskType = RegistryTaskType;
    const NAME: &'static str = "taskd-registry";
    const BATCH: u32 = 200;
    /// A registry batch is one database transaction, well under a second; the lease only
    /// matters when a node dies holding one.
    const LEASE: Duration = Duration::from_secs(15);

    async fn recorded(
        &self,
        task_type: RegistryTaskType,
        sub_task: &ClaimedSubTask,
        outcome: &ReportOutcome,
    ) {
        let frozen_or_deleted = matches!(
            task_type,
            RegistryTaskType::FreezeDevices | RegistryTaskType::DeleteDevices
        );
        if let (true, Some(channel), ReportOutcome::Accepted(SubTaskState::Succeeded)) =
            (frozen_or_deleted, &self.channel, outcome)
        {
            // Once recorded: a device that reconnects now is refused.
            channel
                .disconnect(&sub_task.task.scope, &sub_task.target)
                .await;
        }
    }

    async fn execute(&self, task_type: RegistryTaskType, sub_task: &ClaimedSubTask) -> Executed {
        match device_effect(
            task_type,
            &sub_task.task.scope,
            &sub_task.target,
            sub_task.input_json.as_deref(),
        ) {
            Ok(effect) => Executed::Succeeded {
                output: None,
                effect: Some(Box::new(effect)),
            },
            Err(Invalid(message)) => Executed::Failed {
                kind: SubTaskErrorKind::InvalidInput,
                message,
                output: None,
            },
        }
    }
}

/// Why a sub-task's input describes no valid effect: the sub-task's error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

fn refused(msg: impl std::fmt::Display) -> Invalid {
    Invalid(format!("Invalid input data. {msg}"))
}

/// The registry effect of one sub-task; `Err` when the sub-task's input is invalid (a
/// bad task-file row), which fails that sub-task.
///
/// `input_json` is a task-file row (a JSON object, column name to cell, empty cells
/// omitted) whose header names AddDevice fields (`node_id`, `product_id`, `device_id`,
/// `device_name`, `description`, `app_id`, `secret`, `gateway_id`); for an explicit target
/// list it is `None` and `target` is the device id.
pub fn device_effect(
    task_type: RegistryTaskType,
    scope: &TaskScope,
    target: &str,
    input_json: Option<&str>,
) -> Result<DeviceEffect, Invalid> {
    let row = input_json.map(parse_row).transpose()?;
    let row = Row(row.unwrap_or_default());
    match task_type {
        RegistryTaskType::CreateDevices => {
            if input_json.is_none() {
                return Err(refused("createDevices takes its devices from a task file."));
            }
            let node_id = row.required("node_id")?;
            let product_id = row.required("product_id")?;
            let new = NewDevice {
                scope: scope.clone(),
                device_id: row
                    .get("device_id")
                    .unwrap_or_else(|| default_device_id(&product_id, &node_id)),
                node_id,
                product_id,
                device_name: row.get("device_name"),
                description: row.get("description"),
                gateway_id: row.get("gateway_id"),
                app_id: row.get("app_id"),
                auth_type: AuthType::Secret,
                secret: row.get("secret"),
                fingerprint: None,
                secure_access: false,
                timeout: 0,
                extension_info_json: None,
            };
            check_new_device(&new).map_err(refused)?;
            Ok(DeviceEffect::Create(new))
        }
        RegistryTaskType::UpdateDevices => {
            if input_json.is_none() {
                return Err(refused("updateDevices takes its devices from a task file."));
            }
            let device_id = row.device_id(target)?;
            let update = DeviceUpdate {
                device_name: row.get("device_name"),
                description: row.get("description"),
                ..DeviceUpdate::default()
            };
            if update == DeviceUpdate::default() {
                return Err(refused(
                    "The row names no field to change (device_name, description).",
                ));
            }
            check_device_update(&update).map_err(refused)?;
            Ok(DeviceEffect::Update { device_id, update })
        }
        RegistryTaskType::DeleteDevices => Ok(DeviceEffect::Delete {
            device_id: row.device_id(target)?,
        }),
        RegistryTaskType::FreezeDevices => Ok(DeviceEffect::Freeze {
            device_id: row.device_id(target)?,
        }),
        RegistryTaskType::UnfreezeDevices => Ok(DeviceEffect::Unfreeze {
            device_id: row.device_id(target)?,
        }),
    }
}

fn parse_row(json: &str) -> Result<BTreeMap<String, String>, Invalid> {
    serde_json::from_str(json)
        .map_err(|_| refused("The task-file row is not an object of column names to cells."))
}

/// A task-file row; empty cells count as absent.
struct Row(BTreeMap<String, String>);

impl Row {
    fn get(&self, column: &str) -> Option<String> {
        self.0.get(column).filter(|v| !v.is_empty()).cloned()
    }

    fn required(&self, column: &str) -> Result<String, Invalid> {
        self.get(column)
            .ok_or_else(|| refused(format!("The row has no {column}.")))
    }

    /// The device a row names: its `device_id`, else `{product_id}_{node_id}`, else the
    /// sub-task's target.
    fn device_id(&self, target: &str) -> Result<String, Invalid> {
        let id = match (
            self.get("device_id"),
            self.get("product_id"),
            self.get("node_id"),
        ) {
            (Some(id), _, _) => id,
            (None, Some(product), Some(node)) => default_device_id(&product, &node),
            _ => target.to_owned(),
        };
        if !is_word_id(&id, MAX_DEVICE_ID_CHARS) {
            return Err(refused(format!(
                "device_id {id:?} must be 1-{MAX_DEVICE_ID_CHARS} letters, digits, '_' or '-'."
            )));
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> TaskScope {
        TaskScope::new("p1", "i1")
    }

    fn run(kind: &str, target: &str, input: Option<&str>) -> Result<DeviceEffect, Invalid> {
        let task_type = RegistryTaskType::from_name(kind).expect("a registry type");
        device_effect(task_type, &scope(), target, input)
    }

    #[test]
    fn other_task_types_are_not_registry_types() {
        for kind in ["firmwareUpgrade", "createCommands", "addDevicesToGroup", ""] {
            assert_eq!(RegistryTaskType::from_name(kind), None);
        }
        for &t in RegistryTaskType::ALL {
            assert_eq!(RegistryTaskType::from_name(t.name()), Some(t));
        }
    }

    #[test]
    fn create_from_a_row() {
        let row = r#"{"node_id":"n-1","product_id":"prod","device_name":"meter_1","secret":"secret-123","app_id":"app1","extra":"ignored"}"#;
        let DeviceEffect::Create(new) = run("createDevices", "n-1", Some(row)).unwrap() else {
            panic!("expected Create");
        };
        assert_eq!(new.scope, scope());
        assert_eq!(new.device_id, "prod_n-1", "defaults to product_node");
        assert_eq!(new.device_name.as_deref(), Some("meter_1"));
        assert_eq!(new.secret.as_deref(), Some("secret-123"));
        assert_eq!(new.app_id.as_deref(), Some("app1"));
        assert_eq!(new.gateway_id, None);
        assert_eq!(new.auth_type, AuthType::Secret);

        let with_id = r#"{"node_id":"n-1","product_id":"prod","device_id":"mine","gateway_id":"gw","description":""}"#;
        let DeviceEffect::Create(new) = run("createDevices", "mine", Some(with_id)).unwrap() else {
            panic!("expected Create");
        };
        assert_eq!(new.device_id, "mine");
        assert_eq!(new.gateway_id.as_deref(), Some("gw"));
        assert_eq!(new.description, None, "an empty cell is absent");
    }

    #[test]
    fn bad_create_rows_are_refused() {
        for (row, says) in [
            (r#"{"product_id":"prod"}"#, "node_id"),
            (r#"{"node_id":"n1"}"#, "product_id"),
            (r#"{"node_id":"n 1","product_id":"prod"}"#, "node_id"),
            (
                r#"{"node_id":"n1","product_id":"prod","secret":"short"}"#,
                "secret",
            ),
            (
                r#"{"node_id":"n1","product_id":"prod","device_name":"a b"}"#,
                "device_name",
            ),
            (r#"["n1"]"#, "object"),
            (r#"{"node_id":1}"#, "object"),
            ("not json", "object"),
        ] {
            let r = run("createDevices", "n1", Some(row)).unwrap_err();
            assert!(r.0.starts_with("Invalid input data. "), "{row}: {}", r.0);
            assert!(r.0.contains(says), "{row}: {}", r.0);
        }
        assert!(run("createDevices", "n1", None).is_err(), "needs a row");
    }

    #[test]
    fn targets_name_devices_for_delete_freeze_unfreeze() {
        assert_eq!(
            run("deleteDevices", "d-1", None),
            Ok(DeviceEffect::Delete {
                device_id: "d-1".into()
            })
        );
        assert_eq!(
            run("freezeDevices", "d-1", None),
            Ok(DeviceEffect::Freeze {
                device_id: "d-1".into()
            })
        );
        assert_eq!(
            run("unfreezeDevices", "d-1", None),
            Ok(DeviceEffect::Unfreeze {
                device_id: "d-1".into()
            })
        );
        // From a row: its device_id, else product_node, else the target.
        assert_eq!(
            run("deleteDevices", "x", Some(r#"{"device_id":"d-2"}"#)),
            Ok(DeviceEffect::Delete {
                device_id: "d-2".into()
            })
        );
        assert_eq!(
            run(
                "freezeDevices",
                "n1",
                Some(r#"{"node_id":"n1","product_id":"p"}"#)
            ),
            Ok(DeviceEffect::Freeze {
                device_id: "p_n1".into()
            })
        );
        assert_eq!(
            run("unfreezeDevices", "n1", Some(r#"{"node_id":"n1"}"#)),
            Ok(DeviceEffect::Unfreeze {
                device_id: "n1".into()
            })
        );
        assert!(run("deleteDevices", "row-7", Some(r#"{"device_id":"bad id"}"#)).is_err());
    }

    #[test]
    fn update_from_a_row() {
        assert_eq!(
            run(
                "updateDevices",
                "d-1",
                Some(r#"{"device_id":"d-1","device_name":"new_name","description":"x"}"#)
            ),
            Ok(DeviceEffect::Update {
                device_id: "d-1".into(),
                update: DeviceUpdate {
                    device_name: Some("new_name".into()),
                    description: Some("x".into()),
                    ..DeviceUpdate::default()
                }
            })
        );
        let nothing = run("updateDevices", "d-1", Some(r#"{"device_id":"d-1"}"#)).unwrap_err();
        assert!(nothing.0.contains("no field"));
        let bad = run(
            "updateDevices",
            "d-1",
            Some(r#"{"device_id":"d-1","description":"has spaces"}"#),
        )
        .unwrap_err();
        assert!(bad.0.contains("description"));
        assert!(run("updateDevices", "d-1", None).is_err(), "needs a row");
    }
}
