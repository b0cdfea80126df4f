//! Reads a task file the way an upload does and says what came of it, to measure what a
//! file costs: `/usr/bin/time -v target/release/examples/read_task_file FILE`.

use std::time::Instant;

use taskd_api::iotda::task_file::{Limits, read_task_file};

fn main() {
    let path = std::env::args().nth(1).expect("usage: read_task_file FILE");
    let bytes = std::fs::read(&path).expect("the file is readable");
    let started = Instant::now();
    match read_task_file(&bytes, &Limits::TASK_FILE) {
        Ok(sheet) => println!(
            "read: {} columns, {} data rows",
            sheet.columns.len(),
            sheet.rows.len()
        ),
        Err(e) => println!("refused: {e}"),
    }
    println!("{} bytes in {:?}", bytes.len(), started.elapsed());
}
