//! OTA package records.

use std::sync::Arc;

use taskd_core::ota::SIGN_METHOD_SHA256;
use taskd_core::{NewOtaPackage, ObsLocation, OtaPackage, PackageType, TaskScope, Timestamp};

use super::{T0, at, first_page, insert, new_task, page, scope};
use crate::{
    OtaPackageFilter, OtaPackageInsertOutcome, OtaPackageListParams, Page, PageRequest, Store,
    StoreError,
};

fn new_package(s: &TaskScope, version: &str) -> NewOtaPackage {
    NewOtaPackage {
        scope: s.clone(),
        app_id: None,
        package_type: PackageType::Firmware,
        product_id: "prod-1".into(),
        module_name: None,
        version: version.into(),
        support_source_versions: Vec::new(),
        description: None,
        custom_info: None,
        file_location: ObsLocation {
            region_name: "cn-north-4".into(),
            bucket_name: "bucket".into(),
            object_key: format!("fw/{version}.bin"),
            sign_method: SIGN_METHOD_SHA256.into(),
            sign: None,
        },
    }
}

async fn add(store: &dyn Store, p: NewOtaPackage, now: Timestamp) -> OtaPackage {
    match store.ota_package_insert(p, 100, now).await.unwrap() {
        OtaPackageInsertOutcome::Inserted(p) => p,
        OtaPackageInsertOutcome::LimitReached => panic!("expected Inserted, got LimitReached"),
    }
}

async fn list(
    store: &dyn Store,
    s: &TaskScope,
    filter: OtaPackageFilter,
    page: PageRequest,
) -> Page<OtaPackage> {
    store
        .ota_package_list(&OtaPackageListParams {
            scope: s.clone(),
            filter,
            page,
        })
        .await
        .unwrap()
}

fn versions(page: &Page<OtaPackage>) -> Vec<&str> {
    page.items
        .iter()
        .map(|p| p.package.version.as_str())
        .collect()
}

pub async fn ota_packages_round_trip_list_and_delete(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    assert_eq!(
        list(store, &s, OtaPackageFilter::default(), first_page(10)).await,
        Page::empty()
    );

    // Every field round-trips, and the id is the allocator's: after a task's, before the
    // next task's.
    let before = insert(store, new_task(&s, "t1"), vec![], T0).await;
    let mut full = new_package(&s, "V2.0");
    full.app_id = Some("app-1".into());
    full.package_type = PackageType::Module;
    full.module_name = Some("mod.a".into());
    full.support_source_versions = vec!["V1.0".into(), "V1.1".into()];
    full.description = Some("pour V1.0 et V1.1, ü 描述".into());
    full.custom_info = Some("{\"k\": [1, 2]}\n\t".into());
    full.file_location.sign = Some("ab".repeat(32));
    let p1 = add(store, full.clone(), at(1)).await;
    assert_eq!(p1.package, full);
    assert_eq!(p1.created_at, at(1));
    assert!(p1.id > before.id);
    let after = insert(store, new_task(&s, "t2"), vec![], at(1)).await;
    assert!(after.id > p1.id);
    assert_eq!(
        store.ota_package_get(&s, p1.id).await.unwrap(),
        Some(p1.clone())
    );

    // The minimal package reads back with its absent fields absent.
    let p2 = add(store, new_package(&s, "V2.1"), at(2)).await;
    let got = store.ota_package_get(&s, p2.id).await.unwrap().unwrap();
    assert_eq!(got.package.app_id, None);
    assert_eq!(got.package.support_source_versions, Vec::<String>::new());
    assert_eq!(got.package.file_location.sign, None);
    assert_eq!(got, p2);

    let mut sw = new_package(&s, "V2.0");
    sw.package_type = PackageType::Software;
    sw.product_id = "prod-2".into();
    let p3 = add(store, sw, at(3)).await;
    let mut spaced = new_package(&s, "V3");
    spaced.app_id = Some("app-1".into());
    let p4 = add(store, spaced, at(3)).await;

    // Listing: newest first, each filter alone and together, count = all that match.
    let all = list(store, &s, OtaPackageFilter::default(), first_page(10)).await;
    assert_eq!(all.count, 4);
    assert_eq!(
        all.items.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![p4.id, p3.id, p2.id, p1.id]
    );
    assert_eq!(all.items[3], p1);
    let by = |f: fn(&mut OtaPackageFilter)| {
        let mut filter = OtaPackageFilter::default();
        f(&mut filter);
        filter
    };
    let cases: [(OtaPackageFilter, Vec<&str>); 6] = [
        (by(|f| f.app_id = Some("app-1".into())), vec!["V3", "V2.0"]),
        (
            by(|f| f.package_type = Some(PackageType::Software)),
            vec!["V2.0"],
        ),
        (
            by(|f| f.package_type = Some(PackageType::Firmware)),
            vec!["V3", "V2.1"],
        ),
        (
            by(|f| f.product_id = Some("prod-1".into())),
            vec!["V3", "V2.1", "V2.0"],
        ),
        (
            by(|f| f.version = Some("V2.0".into())),
            vec!["V2.0", "V2.0"],
        ),
        (
            by(|f| {
                f.version = Some("V2.0".into());
                f.product_id = Some("prod-1".into());
                f.app_id = Some("app-1".into());
                f.package_type = Some(PackageType::Module);
            }),
            vec!["V2.0"],
        ),
    ];
    for (filter, want) in cases {
        let got = list(store, &s, filter.clone(), first_page(10)).await;
        assert_eq!(versions(&got), want, "{filter:?}");
        assert_eq!(got.count, want.len() as i64, "{filter:?}");
    }
    assert_eq!(
        list(
            store,
            &s,
            by(|f| f.version = Some("v2.0".into())),
            first_page(10)
        )
        .await,
        Page::empty()
    );

    // Paging: limit, then the marker (ids below it), then an offset; the count stays
    // the total.
    let first = list(store, &s, OtaPackageFilter::default(), first_page(2)).await;
    assert_eq!((versions(&first), first.count), (vec!["V3", "V2.0"], 4));
    let marker = first.items.last().unwrap().id;
    let next = list(store, &s, OtaPackageFilter::default(), page(marker, 0, 2)).await;
    assert_eq!(
        next.items.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![p2.id, p1.id]
    );
    assert_eq!(next.count, 4);
    let skipped = list(store, &s, OtaPackageFilter::default(), page(marker, 1, 10)).await;
    assert_eq!(skipped.items, vec![p1.clone()]);
    let past = list(store, &s, OtaPackageFilter::default(), page(p1.id, 0, 10)).await;
    assert_eq!((past.items.len(), past.count), (0, 4));

    // Scoped: another project or instance sees none of them.
    for other in [scope("p2", "i1"), scope("p1", ""), scope("p1", "i2")] {
        assert_eq!(store.ota_package_get(&other, p1.id).await.unwrap(), None);
        assert_eq!(
            list(store, &other, OtaPackageFilter::default(), first_page(10)).await,
            Page::empty()
        );
        assert!(!store.ota_package_delete(&other, p1.id).await.unwrap());
    }
    assert!(store.ota_package_get(&s, p1.id).await.unwrap().is_some());

    // Delete: once; the tasks stay.
    assert!(store.ota_package_delete(&s, p1.id).await.unwrap());
    assert!(!store.ota_package_delete(&s, p1.id).await.unwrap());
    assert_eq!(store.ota_package_get(&s, p1.id).await.unwrap(), None);
    let all = list(store, &s, OtaPackageFilter::default(), first_page(10)).await;
    assert_eq!(all.count, 3);
    assert!(!all.items.iter().any(|p| p.id == p1.id));
    assert!(store.task_get(&s, before.id).await.unwrap().is_some());
}

pub async fn ota_packages_limit_per_scope(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let max = 3;
    let mut ids = Vec::new();
    for i in 0..max {
        match store
            .ota_package_insert(new_package(&s, &format!("V{i}")), max, at(i.into()))
            .await
            .unwrap()
        {
            OtaPackageInsertOutcome::Inserted(p) => ids.push(p.id),
            OtaPackageInsertOutcome::LimitReached => panic!("package {i} refused"),
        }
    }
    // Full: refused, nothing stored.
    assert_eq!(
        store
            .ota_package_insert(new_package(&s, "V9"), max, at(9))
            .await
            .unwrap(),
        OtaPackageInsertOutcome::LimitReached
    );
    let all = list(store, &s, OtaPackageFilter::default(), first_page(10)).await;
    assert_eq!(all.count, i64::from(max));
    // The limit is per scope.
    add(store, new_package(&scope("p1", "i1"), "V9"), at(9)).await;
    // A delete frees a slot.
    assert!(store.ota_package_delete(&s, ids[0]).await.unwrap());
    assert!(matches!(
        store
            .ota_package_insert(new_package(&s, "V9"), max, at(10))
            .await
            .unwrap(),
        OtaPackageInsertOutcome::Inserted(_)
    ));
}

pub async fn ota_packages_refuse_nul_text(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    const N: &str = "x\0y";
    type Edit = fn(&mut NewOtaPackage);
    let edits: [(&str, Edit); 11] = [
        ("instance_id", |p| p.scope.instance_id = N.into()),
        ("app_id", |p| p.app_id = Some(N.into())),
        ("product_id", |p| p.product_id = N.into()),
        ("module_name", |p| p.module_name = Some(N.into())),
        ("version", |p| p.version = N.into()),
        ("support_source_versions", |p| {
            p.support_source_versions = vec!["V1".into(), N.into()]
        }),
        ("description", |p| p.description = Some(N.into())),
        ("custom_info", |p| p.custom_info = Some(N.into())),
        ("region_name", |p| p.file_location.region_name = N.into()),
        ("object_key", |p| p.file_location.object_key = N.into()),
        ("sign", |p| p.file_location.sign = Some(N.into())),
    ];
    for (field, edit) in edits {
        let mut p = new_package(&s, "V1");
        edit(&mut p);
        match store.ota_package_insert(p, 100, T0).await {
            Err(StoreError::InvalidText(_)) => {}
            other => panic!("{field}: expected InvalidText, got {other:?}"),
        }
    }
    assert_eq!(
        list(store, &s, OtaPackageFilter::default(), first_page(10)).await,
        Page::empty()
    );
    // Lookups by such text find nothing.
    let p = add(store, new_package(&s, "V1"), T0).await;
    let nul_scope = scope("p1", N);
    assert_eq!(store.ota_package_get(&nul_scope, p.id).await.unwrap(), None);
    assert!(!store.ota_package_delete(&nul_scope, p.id).await.unwrap());
    let filter = OtaPackageFilter {
        version: Some(N.into()),
        ..Default::default()
    };
    assert_eq!(list(store, &s, filter, first_page(10)).await, Page::empty());
    assert!(store.ota_package_get(&s, p.id).await.unwrap().is_some());
}
