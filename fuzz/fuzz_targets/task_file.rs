//! The task-file reader (xlsx and xls uploads): whatever the bytes, it answers within its
//! limits and never panics (the process runs under libFuzzer's `-rss_limit_mb` and
//! `-malloc_limit_mb`, set by scripts/fuzz, so a blow-up past the limits is a crash).
//!
//! Each input is read under tight limits first, where a refusal is easy to reach, and
//! then under the upload limits: limits only ever refuse, never change what is read. What
//! the engine makes of an accepted file's rows is one sub-task per row, each with its own
//! target (the stores refuse a repeated one, and with it the task).
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use taskd_api::fuzzing::{Limits, Sheet, read_task_file};
use taskd_engine::fuzzing::file_row_targets;

const TIGHT: Limits = Limits {
    rows: 40,
    columns: 6,
    inflated_bytes: 256 << 10,
    zip_entries: 20,
    text_bytes: 16 << 10,
};

fuzz_target!(|data: &[u8]| {
    let tight = read_task_file(data, &TIGHT);
    if let Ok(sheet) = &tight {
        within(sheet, &TIGHT);
    }
    let upload = read_task_file(data, &Limits::TASK_FILE);
    if let Ok(sheet) = &upload {
        within(sheet, &Limits::TASK_FILE);
        let targets = file_row_targets(&sheet.columns, &sheet.rows);
        assert_eq!(
            targets.len(),
            sheet.rows.len(),
            "a row without its sub-task"
        );
        let distinct: HashSet<&String> = targets.iter().collect();
        assert_eq!(
            distinct.len(),
            targets.len(),
            "repeated targets: {targets:?}"
        );
    }
    if let Ok(sheet) = tight {
        assert_eq!(
            upload.as_ref().ok(),
            Some(&sheet),
            "looser limits read the file differently"
        );
    }
});

fn within(sheet: &Sheet, limits: &Limits) {
    assert!(
        sheet.rows.len() <= limits.rows as usize,
        "{} rows",
        sheet.rows.len()
    );
    assert!(
        sheet.columns.len() <= limits.columns as usize,
        "{} columns",
        sheet.columns.len()
    );
    assert!(
        !sheet.columns.is_empty(),
        "a sheet without a header row was accepted"
    );
    let mut text = sheet.columns.iter().map(String::len).sum::<usize>() as u64;
    for row in &sheet.rows {
        assert_eq!(
            row.len(),
            sheet.columns.len(),
            "a row is not cut or padded to the columns"
        );
        text += row.iter().map(String::len).sum::<usize>() as u64;
    }
    assert!(text <= limits.text_bytes, "{text} bytes of text");
}
