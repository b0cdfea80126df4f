//! Uploaded task files.

use std::sync::Arc;

use taskd_core::{NewTaskFile, TaskFile, TaskScope};

use super::{T0, at, scope};
use crate::{FileInsertOutcome, Store, StoreError, TaskFileContent};

fn new_file(s: &TaskScope, file_id: &str, rows: usize) -> NewTaskFile {
    NewTaskFile {
        scope: s.clone(),
        file_id: file_id.to_owned(),
        file_name: format!("{file_id}.xlsx"),
        columns: vec!["node_id".into(), "name".into(), "note".into()],
        rows: (0..rows)
            .map(|i| {
                vec![
                    format!("node-{i}"),
                    format!("name \"{i}\", ü"),
                    String::new(),
                ]
            })
            .collect(),
    }
}

fn inserted(outcome: FileInsertOutcome) -> TaskFile {
    match outcome {
        FileInsertOutcome::Inserted(f) => f,
        FileInsertOutcome::LimitReached => panic!("expected Inserted, got LimitReached"),
    }
}

pub async fn files_round_trip_and_limit(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    assert_eq!(store.file_list(&s).await.unwrap(), vec![]);

    let f1 = inserted(
        store
            .file_insert(new_file(&s, "f1", 3), 3, T0)
            .await
            .unwrap(),
    );
    assert_eq!(
        f1,
        TaskFile {
            scope: s.clone(),
            file_id: "f1".into(),
            file_name: "f1.xlsx".into(),
            row_count: 3,
            uploaded_at: T0,
        }
    );
    // Same upload time: newest first, then by file id.
    let fb = inserted(
        store
            .file_insert(new_file(&s, "fb", 0), 3, at(5))
            .await
            .unwrap(),
    );
    let fa = inserted(
        store
            .file_insert(new_file(&s, "fa", 1), 3, at(5))
            .await
            .unwrap(),
    );
    assert_eq!(
        store.file_list(&s).await.unwrap(),
        vec![fa.clone(), fb.clone(), f1.clone()]
    );

    // Full: nothing stored.
    assert_eq!(
        store
            .file_insert(new_file(&s, "f4", 1), 3, at(6))
            .await
            .unwrap(),
        FileInsertOutcome::LimitReached
    );
    assert_eq!(store.file_list(&s).await.unwrap().len(), 3);
    assert_eq!(store.file_get(&s, "f4").await.unwrap(), None);

    let content = store.file_get(&s, "f1").await.unwrap().expect("stored");
    let expected = new_file(&s, "f1", 3);
    assert_eq!(
        content,
        TaskFileContent {
            file: f1.clone(),
            columns: expected.columns,
            rows: expected.rows,
        }
    );
    let empty = store.file_get(&s, "fb").await.unwrap().expect("stored");
    assert_eq!((empty.rows.len(), empty.file.row_count), (0, 0));

    // Deleting frees a slot.
    assert!(store.file_delete(&s, "fb").await.unwrap());
    assert!(
        !store.file_delete(&s, "fb").await.unwrap(),
        "already deleted"
    );
    assert_eq!(store.file_get(&s, "fb").await.unwrap(), None);
    let f4 = inserted(
        store
            .file_insert(new_file(&s, "f4", 2), 3, at(7))
            .await
            .unwrap(),
    );
    assert_eq!(store.file_list(&s).await.unwrap(), vec![f4, fa, f1]);

    // A file id is unique.
    match store.file_insert(new_file(&s, "f1", 1), 10, at(8)).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.file_list(&s).await.unwrap().len(), 3);
}

pub async fn files_are_scoped(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let others = [scope("p2", "i1"), scope("p1", ""), scope("p1", "i2")];
    inserted(
        store
            .file_insert(new_file(&s, "f1", 1), 1, T0)
            .await
            .unwrap(),
    );
    for (i, other) in others.iter().enumerate() {
        assert_eq!(store.file_list(other).await.unwrap(), vec![]);
        assert_eq!(store.file_get(other, "f1").await.unwrap(), None);
        assert!(!store.file_delete(other, "f1").await.unwrap());
        // The limit counts per scope: each other scope still has room for one.
        let id = format!("g{i}");
        let f = inserted(
            store
                .file_insert(new_file(other, &id, 1), 1, at(1))
                .await
                .unwrap(),
        );
        assert_eq!(store.file_list(other).await.unwrap(), vec![f]);
    }
    assert_eq!(store.file_list(&s).await.unwrap().len(), 1);
    assert!(store.file_get(&s, "f1").await.unwrap().is_some());
    assert_eq!(
        store
            .file_insert(new_file(&s, "f2", 1), 1, at(2))
            .await
            .unwrap(),
        FileInsertOutcome::LimitReached
    );
}
