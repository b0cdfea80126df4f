//! Every JSON request body taskd reads, through its handler's own parse and checks
//! (`taskd_api::fuzzing::json_body`): byte 0 picks the body type, the rest is the body.
//!
//! A refusal must be an error, never a panic; what passes must hold what the dialect's
//! rules promise the engine and the stores (bounded documents and lists, ids of the
//! documented shape, limits in range).
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskd_api::fuzzing::{Accepted, JsonBody, json_body, retry_in_limits};
use taskd_api::iotda::validate as iotda;
use taskd_core::{MAX_DOCUMENT_BYTES, Timestamp};
use taskd_engine::TargetSource;

const NOW: Timestamp = Timestamp(1_700_000_000_000);

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let kind = JsonBody::ALL[usize::from(which) % JsonBody::ALL.len()];
    let Ok(accepted) = json_body(kind, body, NOW) else {
        return;
    };
    check(accepted);
});

fn json_object(text: &Option<String>, max_bytes: usize, what: &str) {
    if let Some(text) = text {
        assert!(text.len() <= max_bytes, "{what}: {} bytes", text.len());
        let value: serde_json::Value = serde_json::from_str(text).expect("kept JSON is JSON");
        assert!(value.is_object(), "{what} is not an object");
    }
}

fn check(accepted: Accepted) {
    match accepted {
        Accepted::Task(task, source) => {
            assert!(iotda::is_task_name(&task.name) && iotda::is_task_type(&task.kind));
            json_object(&task.document_json, MAX_DOCUMENT_BYTES, "document");
            json_object(
                &task.targets_filter_json,
                MAX_DOCUMENT_BYTES,
                "targets_filter",
            );
            if let Some(ext) = &task.ext_info_json {
                assert!(ext.chars().count() <= iotda::MAX_TASK_EXT_INFO_CHARS);
            }
            if let Some(retry) = &task.retry {
                assert!(retry_in_limits(retry), "{retry:?}");
            }
            if let Some(at) = task.schedule_at {
                assert!(at <= NOW.plus_minutes(iotda::MAX_SCHEDULE_AHEAD_DAYS * 24 * 60));
            }
            match source {
                TargetSource::Explicit(ids) => {
                    assert!((1..=iotda::MAX_TARGETS).contains(&ids.len()));
                    assert!(ids.iter().all(|id| iotda::is_device_id(id)));
                    let mut sorted = ids.clone();
                    sorted.sort();
                    sorted.dedup();
                    assert_eq!(sorted.len(), ids.len(), "a target is given twice");
                    let echoed: Vec<String> =
                        serde_json::from_str(task.targets_json.as_deref().expect("targets kept"))
                            .expect("targets_json is a list");
                    assert_eq!(echoed, ids, "targets echoed differently");
                }
                TargetSource::Groups(ids) => {
                    assert!((1..=iotda::MAX_FILTER_GROUPS).contains(&ids.len()));
                    assert!(ids.iter().all(|id| iotda::is_group_id(id)));
                }
                TargetSource::File(file_id) => {
                    assert!(iotda::is_file_id(&file_id));
                    assert_eq!(task.document_source.as_deref(), Some(file_id.as_str()));
                }
            }
        }
        Accepted::ControlTargets(targets) => {
            if let Some(ids) = targets {
                assert!((1..=iotda::MAX_BATCH_TARGETS).contains(&ids.len()));
                assert!(ids.iter().all(|id| iotda::is_device_id(id)));
            }
        }
        Accepted::Device(device) => {
            // The registry's own rules, which every store relies on, hold for it.
            taskd_core::device::check_new_device(&device)
                .expect("accepted device breaks the registry rules");
            json_object(&device.extension_info_json, usize::MAX, "extension_info");
            assert!(i32::try_from(device.timeout).is_ok());
        }
        Accepted::DeviceUpdate(update) => {
            taskd_core::device::check_device_update(&update)
                .expect("accepted update breaks the registry rules");
            json_object(&update.extension_info_json, usize::MAX, "extension_info");
        }
        Accepted::Group(group) => {
            taskd_core::device::check_new_group(&group)
                .expect("accepted group breaks the registry rules");
        }
        Accepted::Claim(claim) => {
            assert!(!claim.kinds.is_empty() && claim.max >= 1);
            assert!((5..=3600).contains(&claim.lease.as_secs()) && claim.wait.as_secs() <= 60);
            assert!(!claim.worker_id.is_empty() && claim.worker_id.len() <= 128);
        }
        Accepted::HeartbeatLease(lease) => assert!((5..=3600).contains(&lease.as_secs())),
        Accepted::Results(entries) => {
            assert!((1..=500).contains(&entries.len()));
            for (_, entry) in entries {
                if let Ok(Some(result)) = entry {
                    let texts = match &result.outcome {
                        taskd_store::RunOutcome::Succeeded { output } => vec![output.as_deref()],
                        taskd_store::RunOutcome::Failed {
                            error_code,
                            error_msg,
                            output,
                        } => {
                            vec![
                                Some(error_code.as_str()),
                                Some(error_msg.as_str()),
                                output.as_deref(),
                            ]
                        }
                        taskd_store::RunOutcome::Deferred {
                            error_code,
                            error_msg,
                            ..
                        } => {
                            vec![Some(error_code.as_str()), Some(error_msg.as_str())]
                        }
                    };
                    // No store keeps NUL: a result holding one would be refused by the
                    // store, costing the whole batch (issue 10, finding 4).
                    for t in texts.into_iter().flatten() {
                        assert!(!t.contains('\0'), "a result with NUL passed: {t:?}");
                    }
                    assert!(
                        result.effect.is_none(),
                        "a worker result carries a registry effect"
                    );
                }
            }
        }
        Accepted::Operation(op) => {
            json_object(&op.params_json, MAX_DOCUMENT_BYTES, "params");
            assert!(!op.name.is_empty() && !op.name.chars().any(char::is_control));
            assert!(op.service.is_instance_id(&op.instance_id));
        }
        Accepted::Attributes(attrs) => {
            for v in [&attrs.device_type, &attrs.model, &attrs.manufacturer_name]
                .into_iter()
                .flatten()
            {
                assert!(
                    !v.is_empty() && v.chars().count() <= 256 && !v.contains('\0'),
                    "{v:?}"
                );
            }
        }
        Accepted::LegacyTask(v) => {
            assert!(!v.file_id.is_empty() && v.file_id.chars().count() <= 256);
        }
        Accepted::LegacyRefresh => {}
        Accepted::ShadowDesired(updates) => {
            assert!((1..=5).contains(&updates.len()));
            for u in &updates {
                let n = u.service_id.chars().count();
                assert!((1..=taskd_store::MAX_SERVICE_ID_CHARS).contains(&n));
                json_object(
                    &Some(u.desired_json.clone()),
                    taskd_store::MAX_SHADOW_SECTION_BYTES,
                    "desired",
                );
                assert!(u.expected_version.is_none_or(|v| v >= 0));
            }
        }
        Accepted::SecretReset(reset, _force_disconnect) => {
            // A secret the registry's rule accepts (and so no store refuses for NUL).
            assert!(
                taskd_core::device::is_device_secret(&reset.secret),
                "accepted secret breaks the secret rule"
            );
        }
        Accepted::OtaPackage(package) => {
            // The model's rules hold, and the sign is stored lowercase (spec Q19).
            taskd_core::ota::check_new_package(&package)
                .expect("accepted package breaks the package rules");
            if let Some(sign) = &package.file_location.sign {
                assert_eq!(*sign, sign.to_ascii_lowercase(), "sign not lowercased");
            }
        }
    }
}
