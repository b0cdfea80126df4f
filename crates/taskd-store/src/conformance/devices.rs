//! The device registry: devices, static groups, members.

use std::sync::Arc;

use taskd_core::{
    AuthType, Device, DeviceGroup, DeviceStatus, DeviceUpdate, Id, NewDevice, NewDeviceGroup,
    TaskScope,
};

use super::{T0, at, first_page, page, scope};
use crate::{
    DeviceFilter, DeviceListParams, GatewayFilter, GroupFilter, GroupListParams, Page, PageRequest,
    RegistryRefusal, Store,
};

pub fn new_device(s: &TaskScope, product: &str, node: &str) -> NewDevice {
    NewDevice {
        scope: s.clone(),
        device_id: format!("{product}_{node}"),
        node_id: node.to_owned(),
        product_id: product.to_owned(),
        device_name: None,
        description: None,
        gateway_id: None,
        app_id: None,
        auth_type: AuthType::Secret,
        secret: Some("secret-0001".into()),
        fingerprint: None,
        secure_access: false,
        timeout: 0,
        extension_info_json: None,
    }
}

pub fn new_group(s: &TaskScope, group_id: &str, name: &str) -> NewDeviceGroup {
    NewDeviceGroup {
        scope: s.clone(),
        group_id: group_id.to_owned(),
        name: name.to_owned(),
        description: None,
        super_group_id: None,
        app_id: None,
    }
}

async fn add(store: &dyn Store, d: NewDevice, ms: i64) -> Device {
    store
        .device_insert(d, at(ms))
        .await
        .expect("device_insert")
        .expect("device accepted")
}

async fn add_group(store: &dyn Store, g: NewDeviceGroup) -> DeviceGroup {
    store
        .group_insert(g, T0)
        .await
        .expect("group_insert")
        .expect("group accepted")
}

async fn devices(
    store: &dyn Store,
    s: &TaskScope,
    filter: DeviceFilter,
    p: PageRequest,
) -> Page<Device> {
    store
        .device_list(&DeviceListParams {
            scope: s.clone(),
            filter,
            page: p,
        })
        .await
        .expect("device_list")
}

fn device_ids(p: &Page<Device>) -> Vec<&str> {
    p.items.iter().map(|d| d.device_id.as_str()).collect()
}

/// Pages through a listing by marker, 2 at a time; checks every page's count.
async fn all_device_ids(store: &dyn Store, s: &TaskScope, filter: DeviceFilter) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut marker = Id::MAX;
    let total = devices(store, s, filter.clone(), first_page(1)).await.count;
    loop {
        let p = devices(store, s, filter.clone(), page(marker, 0, 2)).await;
        assert_eq!(p.count, total, "count of every page with {filter:?}");
        for d in &p.items {
            assert!(d.id < marker, "ids decrease through the pages");
            assert_eq!(&d.scope, s);
            marker = d.id;
        }
        let done = p.items.len() < 2;
        out.extend(p.items.into_iter().map(|d| d.device_id));
        if done {
            assert_eq!(out.len() as i64, total, "count vs devices paged through");
            return out;
        }
    }
}

async fn refused<T: std::fmt::Debug>(
    r: crate::StoreResult<Result<T, RegistryRefusal>>,
) -> RegistryRefusal {
    match r.expect("store call") {
        Err(refusal) => refusal,
        Ok(v) => panic!("expected a refusal, got {v:?}"),
    }
}

pub async fn device_round_trip_and_update(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let mut n = new_device(&s, "prod", "node-1");
    n.device_name = Some("水表_1".into());
    n.description = Some("north (A)".into());
    n.app_id = Some("app1".into());
    n.extension_info_json = Some(r#"{"k":"v"}"#.into());
    n.secure_access = true;
    n.timeout = 300;
    let d = add(store, n.clone(), 0).await;
    assert_eq!(d.device_id, "prod_node-1");
    assert_eq!(
        d.gateway_id, "prod_node-1",
        "a direct device is its own gateway"
    );
    assert!(d.is_direct());
    assert_eq!(d.status, DeviceStatus::Inactive);
    assert_eq!(d.status_before_freeze, None);
    assert_eq!(
        (d.node_id.as_str(), d.product_id.as_str()),
        ("node-1", "prod")
    );
    assert_eq!(d.device_name.as_deref(), Some("水表_1"));
    assert_eq!(d.app_id.as_deref(), Some("app1"));
    assert_eq!(d.secret.as_deref(), Some("secret-0001"));
    assert_eq!(d.extension_info_json.as_deref(), Some(r#"{"k":"v"}"#));
    assert!(d.secure_access);
    assert_eq!(d.timeout, 300);
    assert_eq!((d.created_at, d.updated_at), (T0, T0));
    assert_eq!(
        store.device_get(&s, "prod_node-1").await.unwrap(),
        Some(d.clone())
    );
    assert_eq!(store.device_get(&s, "nope").await.unwrap(), None);

    // Same id again: refused, nothing changed.
    let mut again = new_device(&s, "other", "x");
    again.device_id = "prod_node-1".into();
    assert_eq!(
        refused(store.device_insert(again, at(1)).await).await,
        RegistryRefusal::DeviceExists
    );
    assert_eq!(
        store.device_get(&s, "prod_node-1").await.unwrap(),
        Some(d.clone())
    );

    // Update changes only the given fields.
    let u = store
        .device_update(
            &s,
            "prod_node-1",
            DeviceUpdate {
                device_name: Some("renamed".into()),
                timeout: Some(0),
                ..DeviceUpdate::default()
            },
            at(5),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.device_name.as_deref(), Some("renamed"));
    assert_eq!(u.timeout, 0);
    assert_eq!(u.description, d.description);
    assert!(u.secure_access);
    assert_eq!((u.created_at, u.updated_at), (T0, at(5)));
    assert_eq!(u.id, d.id);
    assert_eq!(
        refused(
            store
                .device_update(&s, "nope", DeviceUpdate::default(), at(6))
                .await
        )
        .await,
        RegistryRefusal::DeviceNotFound
    );

    // Delete.
    assert_eq!(
        store.device_delete(&s, "prod_node-1", at(7)).await.unwrap(),
        Ok(())
    );
    assert_eq!(store.device_get(&s, "prod_node-1").await.unwrap(), None);
    assert_eq!(
        store.device_delete(&s, "prod_node-1", at(8)).await.unwrap(),
        Err(RegistryRefusal::DeviceNotFound)
    );
    // The id is free again; the new device sorts as the newest.
    let d2 = add(store, n, 9).await;
    assert!(d2.id > d.id);
}

pub async fn device_gateways(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let gw = add(store, new_device(&s, "p", "gw"), 0).await;
    let mut child = new_device(&s, "p", "child");
    child.gateway_id = Some(gw.device_id.clone());
    let child = add(store, child, 1).await;
    assert_eq!(child.gateway_id, "p_gw");
    assert!(!child.is_direct());
    let mut grandchild = new_device(&s, "p", "grandchild");
    grandchild.gateway_id = Some(child.device_id.clone());
    let grandchild = add(store, grandchild, 2).await;
    // A third level is refused, as is an unknown gateway.
    let mut deeper = new_device(&s, "p", "deeper");
    deeper.gateway_id = Some(grandchild.device_id.clone());
    assert_eq!(
        refused(store.device_insert(deeper, at(3)).await).await,
        RegistryRefusal::GatewayTooDeep
    );
    let mut orphan = new_device(&s, "p", "orphan");
    orphan.gateway_id = Some("nowhere".into());
    assert_eq!(
        refused(store.device_insert(orphan, at(3)).await).await,
        RegistryRefusal::GatewayNotFound
    );
    add(store, new_device(&s, "p", "other"), 4).await;

    let sub = |id: &str, cascade| DeviceFilter {
        gateway: Some(GatewayFilter {
            gateway_id: id.into(),
            cascade,
        }),
        ..DeviceFilter::default()
    };
    assert_eq!(
        all_device_ids(store, &s, sub("p_gw", false)).await,
        ["p_child"]
    );
    assert_eq!(
        all_device_ids(store, &s, sub("p_gw", true)).await,
        ["p_grandchild", "p_child"]
    );
    assert_eq!(
        all_device_ids(store, &s, sub("p_child", true)).await,
        ["p_grandchild"]
    );
    assert_eq!(
        all_device_ids(store, &s, sub("p_child", false)).await,
        ["p_grandchild"]
    );
    assert!(
        all_device_ids(store, &s, sub("nowhere", true))
            .await
            .is_empty()
    );

    // Sub-devices can't be frozen; a gateway with sub-devices can't be deleted.
    assert_eq!(
        store.device_freeze(&s, "p_child", at(5)).await.unwrap(),
        Err(RegistryRefusal::SubDeviceFreeze)
    );
    assert_eq!(
        store.device_delete(&s, "p_gw", at(5)).await.unwrap(),
        Err(RegistryRefusal::HasSubDevices)
    );
    assert!(store.device_get(&s, "p_gw").await.unwrap().is_some());
    for id in ["p_grandchild", "p_child", "p_gw"] {
        assert_eq!(store.device_delete(&s, id, at(6)).await.unwrap(), Ok(()));
    }
}

pub async fn device_freeze_rules(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    add(store, new_device(&s, "p", "a"), 0).await;
    assert_eq!(
        store.device_unfreeze(&s, "p_a", at(1)).await.unwrap(),
        Err(RegistryRefusal::NotFrozen)
    );
    assert_eq!(store.device_freeze(&s, "p_a", at(2)).await.unwrap(), Ok(()));
    let d = store.device_get(&s, "p_a").await.unwrap().unwrap();
    assert_eq!(d.status, DeviceStatus::Frozen);
    assert_eq!(d.status_before_freeze, Some(DeviceStatus::Inactive));
    assert_eq!(d.updated_at, at(2));
    assert_eq!(
        store.device_freeze(&s, "p_a", at(3)).await.unwrap(),
        Err(RegistryRefusal::AlreadyFrozen)
    );
    // Updating a frozen device keeps it frozen.
    let u = store
        .device_update(
            &s,
            "p_a",
            DeviceUpdate {
                description: Some("x".into()),
                ..DeviceUpdate::default()
            },
            at(4),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.status, DeviceStatus::Frozen);
    assert_eq!(
        store.device_unfreeze(&s, "p_a", at(5)).await.unwrap(),
        Ok(())
    );
    let d = store.device_get(&s, "p_a").await.unwrap().unwrap();
    assert_eq!(
        d.status,
        DeviceStatus::Inactive,
        "back to the earlier status"
    );
    assert_eq!(d.status_before_freeze, None);
    for r in [
        store.device_freeze(&s, "nope", at(6)).await.unwrap(),
        store.device_unfreeze(&s, "nope", at(6)).await.unwrap(),
    ] {
        assert_eq!(r, Err(RegistryRefusal::DeviceNotFound));
    }
    // A frozen device can be deleted.
    assert_eq!(store.device_freeze(&s, "p_a", at(7)).await.unwrap(), Ok(()));
    assert_eq!(store.device_delete(&s, "p_a", at(8)).await.unwrap(), Ok(()));
}

pub async fn device_list_filters_and_paging(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    assert_eq!(
        devices(store, &s, DeviceFilter::default(), first_page(10)).await,
        Page {
            items: vec![],
            count: 0
        }
    );
    // 7 devices: products pa/pb alternate, names n0..n6, app a1 on the even ones.
    for i in 0..7 {
        let mut d = new_device(
            &s,
            if i % 2 == 0 { "pa" } else { "pb" },
            &format!("node{i}"),
        );
        d.device_name = Some(format!("n{i}"));
        d.app_id = (i % 2 == 0).then(|| "a1".to_string());
        add(store, d, i * 1_000).await;
    }
    let all = all_device_ids(store, &s, DeviceFilter::default()).await;
    assert_eq!(
        all,
        [
            "pa_node6", "pb_node5", "pa_node4", "pb_node3", "pa_node2", "pb_node1", "pa_node0"
        ]
    );

    // Offset skips within the marker's range; the count is the filter's total.
    let p = devices(store, &s, DeviceFilter::default(), page(Id::MAX, 2, 3)).await;
    assert_eq!(device_ids(&p), ["pa_node4", "pb_node3", "pa_node2"]);
    assert_eq!(p.count, 7);
    let marker = p.items[0].id;
    let p = devices(store, &s, DeviceFilter::default(), page(marker, 1, 10)).await;
    assert_eq!(device_ids(&p), ["pa_node2", "pb_node1", "pa_node0"]);
    assert_eq!(p.count, 7);
    let p = devices(store, &s, DeviceFilter::default(), page(Id::MAX, 7, 10)).await;
    assert_eq!((p.items.len(), p.count), (0, 7));

    let f = |f: fn(&mut DeviceFilter)| {
        let mut filter = DeviceFilter::default();
        f(&mut filter);
        filter
    };
    assert_eq!(
        all_device_ids(store, &s, f(|f| f.product_id = Some("pb".into()))).await,
        ["pb_node5", "pb_node3", "pb_node1"]
    );
    assert_eq!(
        all_device_ids(store, &s, f(|f| f.node_id = Some("node4".into()))).await,
        ["pa_node4"]
    );
    assert_eq!(
        all_device_ids(store, &s, f(|f| f.device_name = Some("n3".into()))).await,
        ["pb_node3"]
    );
    assert_eq!(
        all_device_ids(store, &s, f(|f| f.app_id = Some("a1".into()))).await,
        ["pa_node6", "pa_node4", "pa_node2", "pa_node0"]
    );
    assert_eq!(
        all_device_ids(
            store,
            &s,
            f(|f| {
                f.app_id = Some("a1".into());
                f.product_id = Some("pb".into());
            })
        )
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        all_device_ids(
            store,
            &s,
            f(|f| {
                f.created_from = Some(at(2_000));
                f.created_to = Some(at(4_000));
            })
        )
        .await,
        ["pa_node4", "pb_node3", "pa_node2"]
    );
    assert_eq!(
        all_device_ids(
            store,
            &s,
            f(|f| {
                f.product_id = Some("pa".into());
                f.created_from = Some(at(3_000));
            })
        )
        .await,
        ["pa_node6", "pa_node4"]
    );
}

pub async fn devices_are_scoped(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    add(store, new_device(&s, "p", "a"), 0).await;
    let g = add_group(
        store,
        new_group(&s, "00000000-0000-0000-0000-00000000000a", "g"),
    )
    .await;
    assert_eq!(
        store
            .group_add_device(&s, &g.group_id, "p_a", at(1))
            .await
            .unwrap(),
        Ok(())
    );
    for other in [scope("p2", "i1"), scope("p1", ""), scope("p1", "i2")] {
        assert_eq!(store.device_get(&other, "p_a").await.unwrap(), None);
        assert_eq!(
            devices(store, &other, DeviceFilter::default(), first_page(10))
                .await
                .count,
            0
        );
        assert_eq!(
            store
                .device_update(&other, "p_a", DeviceUpdate::default(), at(2))
                .await
                .unwrap(),
            Err(RegistryRefusal::DeviceNotFound)
        );
        assert_eq!(
            store.device_freeze(&other, "p_a", at(2)).await.unwrap(),
            Err(RegistryRefusal::DeviceNotFound)
        );
        assert_eq!(
            store.device_delete(&other, "p_a", at(2)).await.unwrap(),
            Err(RegistryRefusal::DeviceNotFound)
        );
        assert_eq!(store.group_get(&other, &g.group_id).await.unwrap(), None);
        assert_eq!(
            store.group_delete(&other, &g.group_id).await.unwrap(),
            Err(RegistryRefusal::GroupNotFound)
        );
        assert_eq!(
            store
                .device_group_members(&other, std::slice::from_ref(&g.group_id))
                .await
                .unwrap(),
            Err(g.group_id.clone())
        );
        // The same device id and group name are free in another scope.
        add(store, new_device(&other, "p", "a"), 3).await;
        // Group ids are per scope too.
        let og = add_group(store, new_group(&other, &g.group_id, "g")).await;
        assert_eq!(
            store
                .group_add_device(&other, &og.group_id, "p_a", at(4))
                .await
                .unwrap(),
            Ok(())
        );
        assert_eq!(
            store
                .device_group_members(&other, std::slice::from_ref(&og.group_id))
                .await
                .unwrap(),
            Ok(vec!["p_a".to_string()])
        );
        // Deleting there leaves this scope's device and membership alone.
        assert_eq!(
            store.device_delete(&other, "p_a", at(5)).await.unwrap(),
            Ok(())
        );
    }
    assert!(store.device_get(&s, "p_a").await.unwrap().is_some());
    assert_eq!(
        store
            .device_group_members(&s, std::slice::from_ref(&g.group_id))
            .await
            .unwrap(),
        Ok(vec!["p_a".to_string()])
    );
}

pub async fn groups_crud_and_limits(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let mut n = new_group(&s, "10000000-0000-0000-0000-000000000001", "meters north");
    n.description = Some("d".into());
    n.app_id = Some("a1".into());
    let g = add_group(store, n.clone()).await;
    assert_eq!(g.group_id, n.group_id);
    assert_eq!(g.name, "meters north");
    assert_eq!(g.app_id.as_deref(), Some("a1"));
    assert_eq!(g.super_group_id, None);
    assert_eq!((g.created_at, g.updated_at), (T0, T0));
    assert_eq!(
        store.group_get(&s, &g.group_id).await.unwrap(),
        Some(g.clone())
    );

    // Names are unique per resource space.
    let mut dup = n.clone();
    dup.group_id = "10000000-0000-0000-0000-000000000002".into();
    assert_eq!(
        refused(store.group_insert(dup.clone(), T0).await).await,
        RegistryRefusal::GroupNameExists
    );
    dup.app_id = None;
    let other_space = add_group(store, dup).await;

    // Nesting: at most 5 levels; a parent with children can't be deleted.
    let mut parent = g.group_id.clone();
    for level in 2..=5 {
        let mut child = new_group(
            &s,
            &format!("2000000{level}-0000"),
            &format!("level {level}"),
        );
        child.super_group_id = Some(parent.clone());
        parent = add_group(store, child).await.group_id;
    }
    let mut too_deep = new_group(&s, "30000000-0000", "level 6");
    too_deep.super_group_id = Some(parent.clone());
    assert_eq!(
        refused(store.group_insert(too_deep, T0).await).await,
        RegistryRefusal::GroupTooDeep
    );
    let mut orphan = new_group(&s, "30000000-0001", "orphan");
    orphan.super_group_id = Some("ffff".into());
    assert_eq!(
        refused(store.group_insert(orphan, T0).await).await,
        RegistryRefusal::SuperGroupNotFound
    );
    assert_eq!(
        store.group_delete(&s, &g.group_id).await.unwrap(),
        Err(RegistryRefusal::GroupHasChildren)
    );
    assert_eq!(
        store
            .group_get(&s, &parent)
            .await
            .unwrap()
            .unwrap()
            .super_group_id
            .as_deref(),
        Some("20000004-0000")
    );

    // Listing: newest first, filters, marker paging with the total count.
    let list = |filter: GroupFilter, p: PageRequest| {
        let s = s.clone();
        async move {
            store
                .group_list(&GroupListParams {
                    scope: s,
                    filter,
                    page: p,
                })
                .await
                .unwrap()
        }
    };
    let all = list(GroupFilter::default(), first_page(50)).await;
    assert_eq!(all.count, 6);
    assert_eq!(all.items.len(), 6);
    assert!(all.items.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(all.items.last().unwrap().group_id, g.group_id);
    let second = list(GroupFilter::default(), page(all.items[1].id, 1, 2)).await;
    assert_eq!(second.count, 6);
    assert_eq!(
        second.items.iter().map(|g| &g.group_id).collect::<Vec<_>>(),
        vec![&all.items[3].group_id, &all.items[4].group_id]
    );
    let by_app = list(
        GroupFilter {
            app_id: Some("a1".into()),
            ..GroupFilter::default()
        },
        first_page(50),
    )
    .await;
    assert_eq!(
        (by_app.count, by_app.items[0].group_id.as_str()),
        (1, g.group_id.as_str())
    );
    let by_name = list(
        GroupFilter {
            name: Some("meters north".into()),
            ..GroupFilter::default()
        },
        first_page(50),
    )
    .await;
    assert_eq!(by_name.count, 2);
    assert_eq!(by_name.items[0].group_id, other_space.group_id);

    // Deleting leaf first, then up.
    let mut chain = vec![g.group_id.clone()];
    for level in 2..=5 {
        chain.push(format!("2000000{level}-0000"));
    }
    for id in chain.iter().rev() {
        assert_eq!(store.group_delete(&s, id).await.unwrap(), Ok(()));
    }
    assert_eq!(store.group_get(&s, &g.group_id).await.unwrap(), None);
    assert_eq!(
        store.group_delete(&s, &g.group_id).await.unwrap(),
        Err(RegistryRefusal::GroupNotFound)
    );
    assert_eq!(list(GroupFilter::default(), first_page(50)).await.count, 1);
}

pub async fn group_members_and_resolution(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    for node in ["c", "a", "b", "d"] {
        add(store, new_device(&s, "p", node), 0).await;
    }
    let g1 = add_group(
        store,
        new_group(&s, "a0000000-0000-0000-0000-000000000001", "g1"),
    )
    .await
    .group_id;
    let g2 = add_group(
        store,
        new_group(&s, "a0000000-0000-0000-0000-000000000002", "g2"),
    )
    .await
    .group_id;
    let g3 = add_group(
        store,
        new_group(&s, "a0000000-0000-0000-0000-000000000003", "g3"),
    )
    .await
    .group_id;
    for (g, d) in [(&g1, "p_c"), (&g1, "p_a"), (&g2, "p_a"), (&g2, "p_b")] {
        assert_eq!(
            store.group_add_device(&s, g, d, at(10)).await.unwrap(),
            Ok(())
        );
    }
    // Adding a member again changes nothing.
    assert_eq!(
        store
            .group_add_device(&s, &g1, "p_a", at(11))
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        store.group_get(&s, &g1).await.unwrap().unwrap().updated_at,
        at(10)
    );
    assert_eq!(
        store
            .group_add_device(&s, &g1, "nope", at(11))
            .await
            .unwrap(),
        Err(RegistryRefusal::DeviceNotFound)
    );
    assert_eq!(
        store
            .group_add_device(&s, "ffff", "p_a", at(11))
            .await
            .unwrap(),
        Err(RegistryRefusal::GroupNotFound)
    );

    let members = |ids: Vec<&String>| {
        let ids: Vec<String> = ids.into_iter().cloned().collect();
        let s = s.clone();
        async move { store.device_group_members(&s, &ids).await.unwrap() }
    };
    assert_eq!(
        members(vec![&g1, &g2]).await,
        Ok(vec!["p_a".into(), "p_b".into(), "p_c".into()]),
        "distinct, in device-id order"
    );
    assert_eq!(members(vec![&g3]).await, Ok(vec![]));
    let missing = "a0000000-0000-0000-0000-00000000dead".to_string();
    assert_eq!(
        members(vec![&g1, &missing, &g2]).await,
        Err(missing.clone())
    );

    // Removing: the device stays; removing a non-member changes nothing.
    assert_eq!(
        store
            .group_remove_device(&s, &g1, "p_c", at(12))
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        store.group_get(&s, &g1).await.unwrap().unwrap().updated_at,
        at(12)
    );
    assert_eq!(
        store
            .group_remove_device(&s, &g1, "p_c", at(13))
            .await
            .unwrap(),
        Ok(())
    );
    assert!(store.device_get(&s, "p_c").await.unwrap().is_some());
    assert_eq!(members(vec![&g1]).await, Ok(vec!["p_a".into()]));

    // Deleting a device removes it from its groups; deleting a group keeps its devices.
    assert_eq!(
        store.device_delete(&s, "p_a", at(14)).await.unwrap(),
        Ok(())
    );
    assert_eq!(members(vec![&g1, &g2]).await, Ok(vec!["p_b".into()]));
    add(store, new_device(&s, "p", "a"), 15).await;
    assert_eq!(
        members(vec![&g1, &g2]).await,
        Ok(vec!["p_b".into()]),
        "a new device with the old id is in no group"
    );
    assert_eq!(store.group_delete(&s, &g2).await.unwrap(), Ok(()));
    assert!(store.device_get(&s, "p_b").await.unwrap().is_some());
    assert_eq!(members(vec![&g2]).await, Err(g2.clone()));

    // At most 10 groups per device.
    let mut groups = vec![g1.clone(), g3.clone()];
    for i in 0..9 {
        let id = format!("b0000000-0000-0000-0000-00000000000{i}");
        groups.push(
            add_group(store, new_group(&s, &id, &format!("extra {i}")))
                .await
                .group_id,
        );
    }
    for g in &groups[..10] {
        assert_eq!(
            store.group_add_device(&s, g, "p_d", at(20)).await.unwrap(),
            Ok(())
        );
    }
    assert_eq!(
        store
            .group_add_device(&s, &groups[10], "p_d", at(21))
            .await
            .unwrap(),
        Err(RegistryRefusal::GroupsPerDevice)
    );
    assert_eq!(
        store
            .group_add_device(&s, &groups[0], "p_d", at(21))
            .await
            .unwrap(),
        Ok(()),
        "re-adding to one of its groups is fine"
    );
    assert_eq!(members(vec![&groups[10]]).await, Ok(vec![]));
}
