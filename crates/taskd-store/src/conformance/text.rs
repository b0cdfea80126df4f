//! Text: every backend accepts and refuses the same strings ([`crate::text`]). A NUL in
//! text to be stored is refused with [`StoreError::InvalidText`] and writes nothing; a
//! lookup by a key holding one finds nothing; every other character, control characters
//! included, is stored and read back exactly, and found by lookups.

use std::sync::Arc;

use taskd_core::{
    DeviceUpdate, NewSubTask, NewTask, NewTaskFile, OpService, Operation, TaskScope, Timestamp,
};

use super::devices::{new_device, new_group};
use super::{T0, at, claim, first_page, insert, new_task, scope, sub_tasks_for};
use crate::{
    ClaimParams, DeviceAttributes, DeviceFilter, DeviceListParams, FileInsertOutcome,
    GatewayFilter, GroupFilter, GroupListParams, HeartbeatParams, LeaderParams, LegacyApp,
    LegacyOperation, LegacyTaskListParams, LegacyTokens, Page, RegistryRefusal, ReportOutcome,
    ReportParams, RunOutcome, RunResult, Store, StoreError, TargetOutcome, TaskControlOutcome,
    TaskControlParams, TaskDeleteOutcome, TaskFilter, TaskInsertParams, TaskListParams,
};

/// Every control character and a few other odd ones, but NUL.
const ODD: &str =
    "a\u{1}\u{8}\t\n\r\u{b}\u{c}\u{1b}[0m\u{7f}\u{85}\u{a0}\u{2028}\u{feff}\u{fffd} z";

fn odd(prefix: &str) -> String {
    format!("{prefix}{ODD}")
}

#[track_caller]
fn refused<T: std::fmt::Debug>(what: &str, r: Result<T, StoreError>) {
    match r {
        Err(StoreError::InvalidText(_)) => {}
        other => panic!("{what}: expected InvalidText, got {other:?}"),
    }
}

fn op_task(s_project: &str, instance: &str) -> NewTask {
    let scope = OpService::Rabbitmq.scope(s_project, instance);
    let mut t = new_task(&scope, "op");
    t.kind = "modifyInstance".into();
    t.operation = Some(Operation {
        service: OpService::Rabbitmq,
        instance_id: instance.to_owned(),
        user_name: Some("user".into()),
        user_id: Some("u-1".into()),
        target_config_json: Some("{}".into()),
        window: None,
    });
    t
}

fn legacy_op() -> LegacyOperation {
    LegacyOperation {
        operate_type: "firmware_upgrade".into(),
        device_type: Some("Gateway".into()),
        model: Some("M1".into()),
        manufacturer_name: Some("ACME".into()),
        deadline_at: None,
    }
}

fn file(s: &TaskScope, file_id: &str) -> NewTaskFile {
    NewTaskFile {
        scope: s.clone(),
        file_id: file_id.to_owned(),
        file_name: format!("{file_id}.xlsx"),
        columns: vec!["node_id".into(), "note".into()],
        rows: vec![vec!["n1".into(), "x".into()]],
    }
}

fn result(id: taskd_core::Id, attempt: u32, outcome: RunOutcome) -> RunResult {
    RunResult {
        sub_task_id: id,
        attempt,
        outcome,
        effect: None,
    }
}

fn report(project: &str, results: Vec<RunResult>, now: Timestamp) -> ReportParams {
    ReportParams {
        project_id: Some(project.to_owned()),
        results,
        now,
    }
}

fn params(task: NewTask, targets: &[&str]) -> TaskInsertParams {
    TaskInsertParams {
        task,
        sub_tasks: sub_tasks_for(targets),
        now: T0,
    }
}

fn empty<T>(p: &Page<T>) -> bool {
    p.items.is_empty() && p.count == 0
}

pub async fn text_with_nul_is_refused_and_writes_nothing(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    const N: &str = "x\0y";

    refused("project_ensure", store.project_ensure(N, T0).await);
    for (field, c) in [
        ("access_key", (N, "sk", "p1")),
        ("secret_key", ("AK", N, "p1")),
        ("project_id", ("AK", "sk", N)),
    ] {
        let credential = taskd_core::Credential {
            access_key: c.0.into(),
            secret_key: c.1.into(),
            project_id: c.2.into(),
            created_at: T0,
            revoked_at: None,
        };
        refused(field, store.credential_put(&credential).await);
    }
    assert_eq!(store.credential_list().await.unwrap(), vec![]);

    // Tasks: every text field of a task, a sub-task and an operation.
    type Edit = fn(&mut TaskInsertParams);
    let edits: [(&str, Edit); 17] = [
        ("instance_id", |p| p.task.scope.instance_id = N.into()),
        ("app_id", |p| p.task.app_id = Some(N.into())),
        ("name", |p| p.task.name = N.into()),
        ("kind", |p| p.task.kind = N.into()),
        ("mode", |p| p.task.mode = Some(N.into())),
        ("ext_info", |p| p.task.ext_info_json = Some(N.into())),
        ("targets", |p| p.task.targets_json = Some(N.into())),
        ("targets_filter", |p| {
            p.task.targets_filter_json = Some(N.into())
        }),
        ("document", |p| p.task.document_json = Some(N.into())),
        ("document_source", |p| {
            p.task.document_source = Some(N.into())
        }),
        ("target", |p| p.sub_tasks[1].target = N.into()),
        ("input", |p| p.sub_tasks[0].input_json = Some(N.into())),
        ("op instance", |p| {
            p.task.operation.as_mut().unwrap().instance_id = N.into()
        }),
        ("op user_name", |p| {
            p.task.operation.as_mut().unwrap().user_name = Some(N.into())
        }),
        ("op user_id", |p| {
            p.task.operation.as_mut().unwrap().user_id = Some(N.into())
        }),
        ("op target_config", |p| {
            p.task.operation.as_mut().unwrap().target_config_json = Some(N.into())
        }),
        ("second sub-task input", |p| {
            p.sub_tasks.push(NewSubTask {
                target: "c".into(),
                input_json: Some(N.into()),
            })
        }),
    ];
    for (field, edit) in edits {
        let mut p = if field.starts_with("op ") {
            params(op_task("p1", "inst-1"), &["a"])
        } else {
            params(new_task(&s, "t"), &["a", "b"])
        };
        edit(&mut p);
        refused(field, store.task_insert(p.clone()).await);
        refused(field, store.legacy_task_insert(p, legacy_op()).await);
    }
    type OpEdit = fn(&mut LegacyOperation);
    let op_edits: [(&str, OpEdit); 4] = [
        ("operateType", |o| o.operate_type = N.into()),
        ("deviceType", |o| o.device_type = Some(N.into())),
        ("model", |o| o.model = Some(N.into())),
        ("manufacturerName", |o| o.manufacturer_name = Some(N.into())),
    ];
    for (field, edit) in op_edits {
        let mut op = legacy_op();
        edit(&mut op);
        refused(
            field,
            store
                .legacy_task_insert(params(new_task(&s, "t"), &["a"]), op)
                .await,
        );
    }
    let listed = store
        .task_list(&TaskListParams {
            scope: s.clone(),
            filter: TaskFilter::default(),
            page: first_page(10),
        })
        .await
        .unwrap();
    assert!(empty(&listed), "nothing was stored: {listed:?}");

    // Task files.
    type FileEdit = fn(&mut NewTaskFile);
    let file_edits: [(&str, FileEdit); 4] = [
        ("file_id", |f| f.file_id = N.into()),
        ("file_name", |f| f.file_name = N.into()),
        ("column", |f| f.columns[1] = N.into()),
        ("cell", |f| f.rows[0][1] = N.into()),
    ];
    for (field, edit) in file_edits {
        let mut f = file(&s, "f1");
        edit(&mut f);
        refused(field, store.file_insert(f, 10, T0).await);
    }
    assert_eq!(store.file_list(&s).await.unwrap(), vec![]);

    // Devices, groups and their updates.
    type DeviceEdit = fn(&mut taskd_core::NewDevice);
    let device_edits: [(&str, DeviceEdit); 9] = [
        ("device_id", |d| d.device_id = N.into()),
        ("node_id", |d| d.node_id = N.into()),
        ("product_id", |d| d.product_id = N.into()),
        ("device_name", |d| d.device_name = Some(N.into())),
        ("description", |d| d.description = Some(N.into())),
        ("gateway_id", |d| d.gateway_id = Some(N.into())),
        ("app_id", |d| d.app_id = Some(N.into())),
        ("secret", |d| d.secret = Some(N.into())),
        ("extension_info", |d| d.extension_info_json = Some(N.into())),
    ];
    for (field, edit) in device_edits {
        let mut d = new_device(&s, "prod", "n1");
        edit(&mut d);
        refused(field, store.device_insert(d, T0).await);
    }
    let devices = store
        .device_list(&DeviceListParams {
            scope: s.clone(),
            filter: DeviceFilter::default(),
            page: first_page(10),
        })
        .await
        .unwrap();
    assert!(empty(&devices), "nothing was stored: {devices:?}");
    let device = store
        .device_insert(new_device(&s, "prod", "n1"), T0)
        .await
        .unwrap()
        .unwrap();
    for update in [
        DeviceUpdate {
            device_name: Some(N.into()),
            ..DeviceUpdate::default()
        },
        DeviceUpdate {
            description: Some(N.into()),
            ..DeviceUpdate::default()
        },
        DeviceUpdate {
            extension_info_json: Some(N.into()),
            ..DeviceUpdate::default()
        },
    ] {
        refused(
            "device update",
            store
                .device_update(&s, &device.device_id, update, at(1))
                .await,
        );
    }
    assert_eq!(
        store.device_get(&s, &device.device_id).await.unwrap(),
        Some(device.clone()),
        "unchanged"
    );
    type GroupEdit = fn(&mut taskd_core::NewDeviceGroup);
    let group_edits: [(&str, GroupEdit); 5] = [
        ("group_id", |g| g.group_id = N.into()),
        ("name", |g| g.name = N.into()),
        ("description", |g| g.description = Some(N.into())),
        ("super_group_id", |g| g.super_group_id = Some(N.into())),
        ("app_id", |g| g.app_id = Some(N.into())),
    ];
    for (field, edit) in group_edits {
        let mut g = new_group(&s, "0a", "g");
        edit(&mut g);
        refused(field, store.group_insert(g, T0).await);
    }
    assert_eq!(store.group_get(&s, "0a").await.unwrap(), None);

    // The legacy API's own records.
    let app = |app_id: &str, hash: &str| LegacyApp {
        app_id: app_id.into(),
        project_id: "p1".into(),
        secret_hash: hash.into(),
        created_at: T0,
        revoked_at: None,
    };
    refused("appId", store.legacy_app_put(&app(N, "h")).await);
    refused("secret hash", store.legacy_app_put(&app("a1", N)).await);
    assert_eq!(store.legacy_app_list().await.unwrap(), vec![]);
    store.legacy_app_put(&app("a1", "h")).await.unwrap();
    let tokens = |access: &str, refresh: &str| LegacyTokens {
        app_id: "a1".into(),
        access_hash: access.into(),
        access_expires_at: at(1000),
        refresh_hash: refresh.into(),
        refresh_expires_at: at(2000),
        issued_at: T0,
    };
    refused(
        "access hash",
        store.legacy_tokens_put(&tokens(N, "r")).await,
    );
    refused(
        "refresh hash",
        store.legacy_tokens_put(&tokens("a", N)).await,
    );
    assert_eq!(store.legacy_tokens_get("a1").await.unwrap(), None);
    refused("rate window app", store.legacy_rate_hit(N, T0).await);
    for attributes in [
        DeviceAttributes {
            device_type: Some(N.into()),
            ..DeviceAttributes::default()
        },
        DeviceAttributes {
            model: Some(N.into()),
            ..DeviceAttributes::default()
        },
        DeviceAttributes {
            manufacturer_name: Some(N.into()),
            ..DeviceAttributes::default()
        },
    ] {
        refused(
            "attributes",
            store
                .device_attributes_put(&s, &device.device_id, &attributes)
                .await,
        );
    }
    assert_eq!(
        store
            .device_attributes_get(&s, std::slice::from_ref(&device.device_id))
            .await
            .unwrap(),
        vec![(device.device_id.clone(), DeviceAttributes::default())]
    );

    // Running: the worker id, results, leaderships.
    insert(store, new_task(&s, "run"), sub_tasks_for(&["a", "b"]), T0).await;
    refused(
        "worker_id",
        store
            .sub_task_claim(ClaimParams {
                worker_id: N.into(),
                project_id: Some("p1".into()),
                kinds: vec!["firmwareUpgrade".into()],
                max: 10,
                lease_until: at(60_000),
                limits: super::NO_LIMITS,
                now: at(1),
            })
            .await,
    );
    let claimed = claim(store, "p1", "firmwareUpgrade", 10, at(2)).await;
    assert_eq!(claimed.len(), 2, "the refused claim leased nothing");
    let (c0, c1) = (&claimed[0], &claimed[1]);
    for bad in [
        RunOutcome::Succeeded {
            output: Some(N.into()),
        },
        RunOutcome::Failed {
            error_code: N.into(),
            error_msg: "m".into(),
            output: None,
        },
        RunOutcome::Failed {
            error_code: "E".into(),
            error_msg: N.into(),
            output: None,
        },
        RunOutcome::Failed {
            error_code: "E".into(),
            error_msg: "m".into(),
            output: Some(N.into()),
        },
        RunOutcome::Deferred {
            until: at(5),
            error_code: N.into(),
            error_msg: "m".into(),
        },
    ] {
        // Refused whole, the good result beside it included: nothing is half-recorded.
        let results = vec![
            result(
                c1.id,
                c1.attempt,
                RunOutcome::Succeeded {
                    output: Some("fine".into()),
                },
            ),
            result(c0.id, c0.attempt, bad),
        ];
        refused(
            "result",
            store.sub_task_report(report("p1", results, at(3))).await,
        );
    }
    let outcomes = store
        .sub_task_report(report(
            "p1",
            vec![
                result(c0.id, c0.attempt, RunOutcome::Succeeded { output: None }),
                result(c1.id, c1.attempt, RunOutcome::Succeeded { output: None }),
            ],
            at(4),
        ))
        .await
        .unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, ReportOutcome::Accepted(_))),
        "the refused reports left the leases alone: {outcomes:?}"
    );
    for (name, holder) in [(N, "node-1"), ("maintenance", N)] {
        refused(
            "leader",
            store
                .leader_acquire(&LeaderParams {
                    name: name.into(),
                    holder: holder.into(),
                    now: T0,
                    until: at(5_000),
                })
                .await,
        );
    }
}

pub async fn text_lookups_by_nul_find_nothing(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    const N: &str = "\0";
    let bad_scope = scope("p1\0", "");
    let bad_instance = scope("p1", "i\0");

    store
        .credential_put(&taskd_core::Credential {
            access_key: "AK".into(),
            secret_key: "sk".into(),
            project_id: "p1".into(),
            created_at: T0,
            revoked_at: None,
        })
        .await
        .unwrap();
    assert_eq!(store.credential_get("AK\0").await.unwrap(), None);
    assert!(!store.credential_revoke("AK\0", at(1)).await.unwrap());
    assert!(store.credential_get("AK").await.unwrap().is_some());

    let mut task = new_task(&s, "t");
    task.app_id = Some("app".into());
    task.need_confirm = true;
    let task = insert(store, task, sub_tasks_for(&["a", "b"]), T0).await;
    for sc in [&bad_scope, &bad_instance] {
        assert_eq!(store.task_get(sc, task.id).await.unwrap(), None);
        assert_eq!(
            store.task_delete(sc, task.id).await.unwrap(),
            TaskDeleteOutcome::NotFound
        );
        assert_eq!(
            store.legacy_task_get(sc, task.id).await.unwrap(),
            None,
            "{sc:?}"
        );
        let listed = store
            .task_list(&TaskListParams {
                scope: sc.clone(),
                filter: TaskFilter::default(),
                page: first_page(10),
            })
            .await
            .unwrap();
        assert!(empty(&listed));
        assert!(store.file_list(sc).await.unwrap().is_empty());
    }
    for filter in [
        TaskFilter {
            app_id: Some("app\0".into()),
            ..TaskFilter::default()
        },
        TaskFilter {
            kind: Some(N.into()),
            ..TaskFilter::default()
        },
    ] {
        let listed = store
            .task_list(&TaskListParams {
                scope: s.clone(),
                filter: filter.clone(),
                page: first_page(10),
            })
            .await
            .unwrap();
        assert!(empty(&listed), "{filter:?}: {listed:?}");
    }
    let subs = |scope: &TaskScope, target: Option<&str>| crate::SubTaskListParams {
        scope: scope.clone(),
        task_id: task.id,
        state: None,
        target: target.map(str::to_owned),
        page: first_page(10),
    };
    let page = store
        .sub_task_list(&subs(&s, Some("a\0")))
        .await
        .unwrap()
        .expect("the task exists");
    assert!(empty(&page), "{page:?}");
    assert_eq!(
        store.sub_task_list(&subs(&bad_scope, None)).await.unwrap(),
        None
    );

    // Control: a target with a NUL is simply not in the task.
    let confirm = |scope: &TaskScope, targets: Option<Vec<String>>| TaskControlParams {
        scope: scope.clone(),
        task_id: task.id,
        op: taskd_core::ControlOp::Confirm,
        targets,
        now: at(1),
    };
    assert_eq!(
        store.task_control(confirm(&bad_scope, None)).await.unwrap(),
        TaskControlOutcome::NotFound
    );
    match store
        .task_control(confirm(&s, Some(vec!["a".into(), "b\0".into()])))
        .await
        .unwrap()
    {
        TaskControlOutcome::Applied { targets, .. } => assert_eq!(
            targets,
            vec![
                ("a".to_owned(), TargetOutcome::Applied),
                ("b\0".to_owned(), TargetOutcome::NotInTask)
            ]
        ),
        other => panic!("{other:?}"),
    }

    // Claims, heartbeats and results of a project or kind with a NUL find nothing.
    let claim_with = |project: &str, kinds: &[&str]| ClaimParams {
        worker_id: "w".into(),
        project_id: Some(project.into()),
        kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
        max: 10,
        lease_until: at(60_000),
        limits: super::NO_LIMITS,
        now: at(2),
    };
    assert_eq!(
        store
            .sub_task_claim(claim_with("p1\0", &["firmwareUpgrade"]))
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(
        store.sub_task_claim(claim_with("p1", &[N])).await.unwrap(),
        vec![]
    );
    let claimed = store
        .sub_task_claim(claim_with("p1", &[N, "firmwareUpgrade"]))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the other kind is claimed as usual");
    let c = &claimed[0];
    assert_eq!(
        store
            .sub_task_heartbeat(HeartbeatParams {
                project_id: Some("p1\0".into()),
                sub_task_id: c.id,
                attempt: c.attempt,
                lease_until: at(70_000),
                progress: None,
                now: at(3),
            })
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .sub_task_report(report(
                "p1\0",
                vec![result(
                    c.id,
                    c.attempt,
                    RunOutcome::Succeeded { output: None }
                )],
                at(4),
            ))
            .await
            .unwrap(),
        vec![ReportOutcome::LeaseLost]
    );
    store.leader_release(N, "node").await.unwrap();
    store.leader_release("maintenance", N).await.unwrap();

    // Operations.
    let op = insert(
        store,
        op_task("p1", "inst-1"),
        sub_tasks_for(&["inst-1"]),
        T0,
    )
    .await;
    assert_eq!(
        store
            .op_instance_owner(OpService::Rabbitmq, "inst-1\0")
            .await
            .unwrap(),
        None
    );
    let op_scope = OpService::Rabbitmq.scope("p1", "inst-1\0");
    assert_eq!(store.op_get(&op_scope, op.id).await.unwrap(), None);
    let ops = store
        .op_list(&crate::OpListParams {
            scope: op_scope,
            state: None,
            created_from: None,
            created_to: None,
            page: first_page(10),
        })
        .await
        .unwrap();
    assert!(empty(&ops));

    // Files.
    assert!(matches!(
        store.file_insert(file(&s, "f1"), 10, T0).await.unwrap(),
        FileInsertOutcome::Inserted(_)
    ));
    assert_eq!(store.file_get(&s, "f1\0").await.unwrap(), None);
    assert!(!store.file_delete(&s, "f1\0").await.unwrap());
    assert_eq!(store.file_get(&bad_scope, "f1").await.unwrap(), None);
    assert_eq!(store.file_list(&s).await.unwrap().len(), 1);

    // Devices and groups.
    let mut gw = new_device(&s, "prod", "gw");
    gw.device_name = Some("gw".into());
    gw.app_id = Some("app".into());
    let gw = store.device_insert(gw, T0).await.unwrap().unwrap();
    let mut child = new_device(&s, "prod", "child");
    child.gateway_id = Some(gw.device_id.clone());
    let child = store.device_insert(child, T0).await.unwrap().unwrap();
    let gid = "0a";
    store
        .group_insert(new_group(&s, gid, "g"), T0)
        .await
        .unwrap()
        .unwrap();
    let d = gw.device_id.as_str();
    let nd = format!("{d}\0");
    assert_eq!(store.device_get(&s, &nd).await.unwrap(), None);
    assert_eq!(store.device_get(&bad_scope, d).await.unwrap(), None);
    let not_found = Err(RegistryRefusal::DeviceNotFound);
    assert_eq!(
        store
            .device_update(&s, &nd, DeviceUpdate::default(), at(1))
            .await
            .unwrap()
            .map(|_| ()),
        not_found
    );
    assert_eq!(
        store.device_freeze(&s, &nd, at(1)).await.unwrap(),
        not_found
    );
    assert_eq!(
        store.device_unfreeze(&s, &nd, at(1)).await.unwrap(),
        not_found
    );
    assert_eq!(
        store.device_delete(&s, &nd, at(1)).await.unwrap(),
        not_found
    );
    let filters = [
        DeviceFilter {
            product_id: Some("prod\0".into()),
            ..DeviceFilter::default()
        },
        DeviceFilter {
            node_id: Some(N.into()),
            ..DeviceFilter::default()
        },
        DeviceFilter {
            device_name: Some("g\0w".into()),
            ..DeviceFilter::default()
        },
        DeviceFilter {
            app_id: Some("app\0".into()),
            ..DeviceFilter::default()
        },
        DeviceFilter {
            gateway: Some(GatewayFilter {
                gateway_id: nd.clone(),
                cascade: true,
            }),
            ..DeviceFilter::default()
        },
    ];
    for filter in filters {
        let listed = store
            .device_list(&DeviceListParams {
                scope: s.clone(),
                filter: filter.clone(),
                page: first_page(10),
            })
            .await
            .unwrap();
        assert!(empty(&listed), "{filter:?}: {listed:?}");
    }
    let listed = store
        .device_list(&DeviceListParams {
            scope: bad_instance.clone(),
            filter: DeviceFilter::default(),
            page: first_page(10),
        })
        .await
        .unwrap();
    assert!(empty(&listed));
    assert_eq!(store.group_get(&s, "0a\0").await.unwrap(), None);
    for filter in [
        GroupFilter {
            name: Some("g\0".into()),
            ..GroupFilter::default()
        },
        GroupFilter {
            app_id: Some(N.into()),
            ..GroupFilter::default()
        },
    ] {
        let listed = store
            .group_list(&GroupListParams {
                scope: s.clone(),
                filter,
                page: first_page(10),
            })
            .await
            .unwrap();
        assert!(empty(&listed));
    }
    let group_gone = Err(RegistryRefusal::GroupNotFound);
    assert_eq!(store.group_delete(&s, "0a\0").await.unwrap(), group_gone);
    assert_eq!(
        store.group_add_device(&s, "0a\0", d, at(1)).await.unwrap(),
        group_gone
    );
    assert_eq!(
        store
            .group_remove_device(&s, "0a\0", d, at(1))
            .await
            .unwrap(),
        group_gone
    );
    assert_eq!(
        store.group_add_device(&s, gid, &nd, at(1)).await.unwrap(),
        not_found
    );
    store
        .group_add_device(&s, gid, &child.device_id, at(1))
        .await
        .unwrap()
        .unwrap();
    let members = |ids: &[&str]| ids.iter().map(|i| (*i).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        store
            .device_group_members(&s, &members(&[gid, "0b\0"]))
            .await
            .unwrap(),
        Err("0b\0".to_owned())
    );
    assert_eq!(
        store
            .device_group_members(&s, &members(&["ff", "0b\0"]))
            .await
            .unwrap(),
        Err("ff".to_owned()),
        "the first group that does not exist, in order"
    );
    assert_eq!(
        store
            .device_group_members(&s, &members(&[gid]))
            .await
            .unwrap(),
        Ok(vec![child.device_id.clone()])
    );

    // The legacy API.
    assert_eq!(store.legacy_app_get("a1\0").await.unwrap(), None);
    assert!(!store.legacy_app_revoke("a1\0", at(1)).await.unwrap());
    assert_eq!(store.legacy_tokens_get("a1\0").await.unwrap(), None);
    let attributes = DeviceAttributes {
        device_type: Some("Gateway".into()),
        ..DeviceAttributes::default()
    };
    assert!(
        !store
            .device_attributes_put(&s, &nd, &attributes)
            .await
            .unwrap()
    );
    assert!(
        store
            .device_attributes_put(&s, d, &attributes)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .device_attributes_get(&s, &members(&[&nd, d, "x"]))
            .await
            .unwrap(),
        vec![(d.to_owned(), attributes)]
    );
    store
        .legacy_task_insert(params(new_task(&s, "lt"), &[d]), legacy_op())
        .await
        .unwrap();
    let base = LegacyTaskListParams {
        scope: s.clone(),
        operate_type: None,
        states: Vec::new(),
        device_type: None,
        model: None,
        manufacturer_name: None,
        device_id: None,
        offset: 0,
        limit: 100,
    };
    assert_eq!(store.legacy_task_list(&base).await.unwrap().count, 1);
    type ListEdit = fn(&mut LegacyTaskListParams);
    let list_edits: [ListEdit; 6] = [
        |p| p.operate_type = Some("firmware_upgrade\0".into()),
        |p| p.device_type = Some("Gateway\0".into()),
        |p| p.model = Some("M1\0".into()),
        |p| p.manufacturer_name = Some("\0".into()),
        |p| p.device_id = Some("\0".into()),
        |p| p.scope = scope("p1", "\0"),
    ];
    for edit in list_edits {
        let mut p = base.clone();
        edit(&mut p);
        let listed = store.legacy_task_list(&p).await.unwrap();
        assert!(empty(&listed), "{p:?}: {listed:?}");
    }
}

pub async fn text_control_characters_round_trip(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", &odd("i"));

    let credential = taskd_core::Credential {
        access_key: odd("AK"),
        secret_key: odd("sk"),
        project_id: "p1".into(),
        created_at: T0,
        revoked_at: None,
    };
    store.credential_put(&credential).await.unwrap();
    assert_eq!(
        store.credential_get(&odd("AK")).await.unwrap(),
        Some(credential)
    );

    let mut task = new_task(&s, &odd("name"));
    task.app_id = Some(odd("app"));
    task.kind = odd("kind");
    task.mode = Some(odd("mode"));
    task.ext_info_json = Some(odd("ext"));
    task.targets_json = Some(odd("targets"));
    task.targets_filter_json = Some(odd("filter"));
    task.document_json = Some(odd("doc"));
    task.document_source = Some(odd("src"));
    let subs = vec![
        NewSubTask {
            target: odd("t1"),
            input_json: Some(odd("in")),
        },
        NewSubTask {
            target: odd("t2"),
            input_json: None,
        },
    ];
    let inserted = insert(store, task.clone(), subs, T0).await;
    let got = store.task_get(&s, inserted.id).await.unwrap().unwrap();
    assert_eq!(got, inserted);
    assert_eq!(got.name, task.name);
    assert_eq!(got.ext_info_json, task.ext_info_json);
    assert_eq!(got.document_json, task.document_json);
    for filter in [
        TaskFilter {
            app_id: task.app_id.clone(),
            ..TaskFilter::default()
        },
        TaskFilter {
            kind: Some(task.kind.clone()),
            ..TaskFilter::default()
        },
    ] {
        let listed = store
            .task_list(&TaskListParams {
                scope: s.clone(),
                filter,
                page: first_page(10),
            })
            .await
            .unwrap();
        assert_eq!(listed.count, 1);
    }
    let page = store
        .sub_task_list(&crate::SubTaskListParams {
            scope: s.clone(),
            task_id: inserted.id,
            state: None,
            target: Some(odd("t1")),
            page: first_page(10),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page.count, 1);
    assert_eq!(page.items[0].input_json, Some(odd("in")));

    let claimed = claim(store, "p1", &odd("kind"), 10, at(1)).await;
    assert_eq!(claimed.len(), 2);
    let outcomes = store
        .sub_task_report(report(
            "p1",
            vec![
                result(
                    claimed[0].id,
                    claimed[0].attempt,
                    RunOutcome::Succeeded {
                        output: Some(odd("out")),
                    },
                ),
                result(
                    claimed[1].id,
                    claimed[1].attempt,
                    RunOutcome::Failed {
                        error_code: odd("E"),
                        error_msg: odd("msg"),
                        output: None,
                    },
                ),
            ],
            at(2),
        ))
        .await
        .unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, ReportOutcome::Accepted(_)))
    );
    let subs = store
        .sub_task_list(&crate::SubTaskListParams {
            scope: s.clone(),
            task_id: inserted.id,
            state: None,
            target: None,
            page: first_page(10),
        })
        .await
        .unwrap()
        .unwrap()
        .items;
    let by_id = |id| subs.iter().find(|x| x.id == id).unwrap();
    assert_eq!(by_id(claimed[0].id).output, Some(odd("out")));
    assert_eq!(by_id(claimed[1].id).error_code, Some(odd("E")));
    assert_eq!(by_id(claimed[1].id).error_msg, Some(odd("msg")));

    let mut f = file(&s, &odd("f"));
    f.file_name = odd("name");
    f.columns[1] = odd("col");
    f.rows[0][1] = odd("cell");
    store.file_insert(f.clone(), 10, T0).await.unwrap();
    let content = store.file_get(&s, &odd("f")).await.unwrap().unwrap();
    assert_eq!(content.file.file_name, f.file_name);
    assert_eq!(content.columns, f.columns);
    assert_eq!(content.rows, f.rows);

    let ps = scope("p1", "");
    let mut d = new_device(&ps, "prod", "n1");
    d.device_name = Some(odd("name"));
    d.description = Some(odd("desc"));
    d.extension_info_json = Some(odd("ext"));
    let device = store.device_insert(d.clone(), T0).await.unwrap().unwrap();
    assert_eq!(device.device_name, d.device_name);
    assert_eq!(device.description, d.description);
    assert_eq!(device.extension_info_json, d.extension_info_json);
    let listed = store
        .device_list(&DeviceListParams {
            scope: ps.clone(),
            filter: DeviceFilter {
                device_name: Some(odd("name")),
                ..DeviceFilter::default()
            },
            page: first_page(10),
        })
        .await
        .unwrap();
    assert_eq!(listed.count, 1, "found by its name");
    let updated = store
        .device_update(
            &ps,
            &device.device_id,
            DeviceUpdate {
                description: Some(odd("new")),
                ..DeviceUpdate::default()
            },
            at(1),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.description, Some(odd("new")));
    let mut g = new_group(&ps, "0a", &odd("g"));
    g.description = Some(odd("gd"));
    let group = store.group_insert(g.clone(), T0).await.unwrap().unwrap();
    assert_eq!((group.name, group.description), (g.name, g.description));
    let listed = store
        .group_list(&GroupListParams {
            scope: ps.clone(),
            filter: GroupFilter {
                name: Some(odd("g")),
                ..GroupFilter::default()
            },
            page: first_page(10),
        })
        .await
        .unwrap();
    assert_eq!(listed.count, 1, "found by its name");

    let attributes = DeviceAttributes {
        device_type: Some(odd("type")),
        model: Some(odd("model")),
        manufacturer_name: Some(odd("maker")),
    };
    assert!(
        store
            .device_attributes_put(&ps, &device.device_id, &attributes)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .device_attributes_get(&ps, std::slice::from_ref(&device.device_id))
            .await
            .unwrap(),
        vec![(device.device_id.clone(), attributes)]
    );
    let op = LegacyOperation {
        operate_type: "firmware_upgrade".into(),
        device_type: Some(odd("type")),
        model: Some(odd("model")),
        manufacturer_name: Some(odd("maker")),
        deadline_at: None,
    };
    let legacy = store
        .legacy_task_insert(
            params(new_task(&ps, &odd("lt")), &[&device.device_id]),
            op.clone(),
        )
        .await
        .unwrap();
    let listed = store
        .legacy_task_list(&LegacyTaskListParams {
            scope: ps.clone(),
            operate_type: None,
            states: Vec::new(),
            device_type: op.device_type.clone(),
            model: op.model.clone(),
            manufacturer_name: op.manufacturer_name.clone(),
            device_id: None,
            offset: 0,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(listed.count, 1);
    assert_eq!(listed.items[0].task.id, legacy.id);
    assert_eq!(listed.items[0].operation, op);
}
