//! Reading a task file (xlsx or xls) into a header row and data rows with bounded memory
//! and time, whatever the upload holds.
//!
//! A task file is untrusted input from any tenant, and a spreadsheet is a small file that
//! can describe a huge one: cells at A1 and XFD1048576 make a dense grid of 2^34 cells, a
//! 1 MB zip can inflate to gigabytes. So nothing is ever sized from what the file declares:
//!
//! * xlsx: the zip is walked first and every entry inflated through a counter, refusing
//!   the file once the real inflated bytes (all entries together) pass
//!   [`Limits::inflated_bytes`], or once it holds more shared strings than a task file
//!   has cells; only then does calamine open it (it reads the shared strings, styles and
//!   workbook whole). The first sheet is then read cell by cell with
//!   calamine's streaming reader, never as a range, and a declared `<dimension>` or a cell
//!   outside [`Limits::rows`] + 1 rows and [`Limits::columns`] columns stops the read.
//! * xls: calamine builds a dense range of every sheet when it opens the workbook, so the
//!   workbook stream is checked record by record first and handed to calamine in a
//!   rebuilt compound file (see `biff`).
//!
//! [`read_task_file`] is the whole reader: the upload handler and the fuzz target call it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use calamine::{Data, DataRef, Reader, Xlsx};

use super::error::IotdaError;

mod biff;

/// What a task file may hold. [`Limits::TASK_FILE`] is what uploads get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Data rows (the header row not counted). Cells must also lie within the first
    /// `rows + 1` rows of the sheet.
    pub rows: u32,
    /// Cells must lie within the first `columns` columns.
    pub columns: u32,
    /// Bytes all entries of an xlsx zip may inflate to together; also the largest xls
    /// workbook stream.
    pub inflated_bytes: u64,
    /// Entries an xlsx zip may hold.
    pub zip_entries: usize,
    /// Bytes of cell text kept. For xls, calamine's strings of every sheet, estimated
    /// from the records before it parses them.
    pub text_bytes: u64,
}

impl Limits {
    pub const TASK_FILE: Limits = Limits {
        rows: 30_000,
        // A..AF. The registry reads 8 columns; the rest of a row travels to workers.
        columns: 32,
        inflated_bytes: 64 << 20,
        // A spreadsheet writer makes about ten.
        zip_entries: 1_000,
        text_bytes: 64 << 20,
    };

    /// Rows a sheet may span: the header and the data rows.
    fn sheet_rows(&self) -> u32 {
        self.rows.saturating_add(1)
    }
}

/// A spreadsheet read into text cells.
#[derive(Debug, PartialEq, Eq)]
pub struct Sheet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const CFB_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Reads the first sheet: its first non-empty row names the columns, every later
/// non-empty row is a data row (cut or padded to the columns). The format is told from
/// the content, not the name.
///
/// Never panics and never allocates more than the limits allow (a small multiple of
/// them): a refusal is a file error of the IoTDA dialect (`IOTDA.0146xx`).
pub fn read_task_file(bytes: &[u8], limits: &Limits) -> Result<Sheet, IotdaError> {
    // The checks above bound what calamine gets; a panic inside it on some input they
    // let through is still a bad file, not a reason to lose the request.
    std::panic::catch_unwind(|| {
        if bytes.starts_with(ZIP_MAGIC) {
            read_xlsx(bytes, limits)
        } else if bytes.starts_with(CFB_MAGIC) {
            read_xls(bytes, limits)
        } else {
            Err(unreadable(
                "it is neither an xlsx (zip) nor an xls (compound) file",
            ))
        }
    })
    .unwrap_or_else(|_| Err(unreadable("the spreadsheet parser failed on it")))
}

fn unreadable(msg: impl std::fmt::Display) -> IotdaError {
    IotdaError::FileUnreadable(msg.to_string())
}

fn read_xlsx(bytes: &[u8], limits: &Limits) -> Result<Sheet, IotdaError> {
    check_zip(bytes, limits)?;
    let mut book = Xlsx::new(Cursor::new(bytes)).map_err(unreadable)?;
    let first = book
        .sheet_names()
        .into_iter()
        .next()
        .ok_or(IotdaError::FileEmpty)?;
    let mut cells = book.worksheet_cells_reader(&first).map_err(unreadable)?;
    let mut grid = Grid::new(limits);
    let declared = cells.dimensions();
    grid.check_position(declared.end, "the sheet's declared dimension reaches")?;
    while let Some(cell) = cells.next_cell().map_err(unreadable)? {
        grid.put(cell.get_position(), cell_text(cell.get_value()))?;
    }
    grid.into_sheet()
}

fn read_xls(bytes: &[u8], limits: &Limits) -> Result<Sheet, IotdaError> {
    let rebuilt = biff::checked_workbook(bytes, limits)?;
    let mut book = calamine::Xls::new(Cursor::new(rebuilt)).map_err(unreadable)?;
    let range = book
        .worksheet_range_at(0)
        .ok_or(IotdaError::FileEmpty)?
        .map_err(unreadable)?;
    let mut grid = Grid::new(limits);
    for (row, col, value) in range.used_cells() {
        let (row, col) = (row as u32, col as u32);
        let start = range.start().unwrap_or_default();
        let pos = (start.0 + row, start.1 + col);
        grid.put(pos, data_text(value))?;
    }
    grid.into_sheet()
}

/// End-of-central-directory and zip64 signatures. The zip crate tries every candidate
/// from the end and scans the file for each, so a file made of them costs quadratic
/// time; a spreadsheet writer makes one.
const ZIP_END_SIGNATURES: [&[u8]; 3] = [b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07"];
const MAX_END_SIGNATURES: usize = 8;

/// Inflates every entry of the zip into a counter: more than `limits.inflated_bytes`
/// in all, or more than `limits.zip_entries` entries, is refused. Declared sizes are
/// not trusted; the bytes are counted as they come out of the inflater.
fn check_zip(bytes: &[u8], limits: &Limits) -> Result<(), IotdaError> {
    let ends = bytes
        .windows(4)
        .filter(|w| ZIP_END_SIGNATURES.contains(w))
        .count();
    if ends > MAX_END_SIGNATURES {
        return Err(unreadable(format!(
            "its zip has {ends} end-of-directory records"
        )));
    }
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(unreadable)?;
    if zip.len() > limits.zip_entries {
        return Err(unreadable(format!(
            "its zip has {} entries; at most {} are allowed",
            zip.len(),
            limits.zip_entries
        )));
    }
    let mut left = limits.inflated_bytes;
    let mut strings = SharedStrings::default();
    for i in 0..zip.len() {
        let entry = zip.by_index(i).map_err(unreadable)?;
        // One byte more than is left tells "over" from "exactly at the limit".
        let n = std::io::copy(&mut entry.take(left + 1), &mut strings).map_err(unreadable)?;
        if n > left {
            return Err(unreadable(format!(
                "it inflates to more than {} bytes",
                limits.inflated_bytes
            )));
        }
        left -= n;
    }
    // More shared strings than a task file has cells cannot all be used, and calamine
    // spends two allocations on each: 64 MiB of `<si><t/></si>` would take seconds.
    let max = u64::from(limits.sheet_rows()) * u64::from(limits.columns);
    if strings.count > max {
        return Err(unreadable(format!("it has more than {max} shared strings")));
    }
    Ok(())
}

/// Counts shared-string elements (`<si`, `<x:si`) in the bytes written to it, which it
/// otherwise drops.
#[derive(Default)]
struct SharedStrings {
    last: [u8; 3],
    count: u64,
}

impl SharedStrings {
    fn count_in(bytes: &[u8]) -> u64 {
        memchr::memmem::find_iter(bytes, b"si")
            .filter(|&at| {
                at > 0
                    && matches!(bytes[at - 1], b'<' | b':')
                    && matches!(
                        bytes.get(at + 2),
                        Some(b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r')
                    )
            })
            .count() as u64
    }
}

impl std::io::Write for SharedStrings {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The openings that straddle the previous write, then those inside this one.
        let mut seam = self.last.to_vec();
        seam.extend_from_slice(&buf[..buf.len().min(3)]);
        self.count += Self::count_in(&seam) + Self::count_in(buf);
        for &b in buf.iter().rev().take(3).rev() {
            self.last = [self.last[1], self.last[2], b];
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The cells read so far, by row; only non-empty text is kept.
struct Grid<'l> {
    limits: &'l Limits,
    rows: BTreeMap<u32, Vec<String>>,
    text: u64,
}

impl<'l> Grid<'l> {
    fn new(limits: &'l Limits) -> Self {
        Grid {
            limits,
            rows: BTreeMap::new(),
            text: 0,
        }
    }

    fn check_position(&self, (row, col): (u32, u32), what: &str) -> Result<(), IotdaError> {
        check_position(self.limits, (row, col), what)
    }

    fn put(&mut self, pos: (u32, u32), text: Cow<'_, str>) -> Result<(), IotdaError> {
        self.check_position(pos, "a cell lies at")?;
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        self.text += text.len() as u64;
        if self.text > self.limits.text_bytes {
            return Err(unreadable(format!(
                "its cells hold more than {} bytes of text",
                self.limits.text_bytes
            )));
        }
        let (row, col) = (pos.0, pos.1 as usize);
        let cells = self.rows.entry(row).or_default();
        if cells.len() <= col {
            cells.resize(col + 1, String::new());
        }
        cells[col] = text.to_string();
        Ok(())
    }

    fn into_sheet(self) -> Result<Sheet, IotdaError> {
        let mut rows = self.rows.into_values();
        let mut columns = rows.next().ok_or(IotdaError::FileEmpty)?;
        while columns.last().is_some_and(String::is_empty) {
            columns.pop();
        }
        let rows: Vec<_> = rows
            .map(|mut row| {
                row.resize(columns.len(), String::new());
                row
            })
            .collect();
        if rows.is_empty() {
            return Err(IotdaError::FileEmpty);
        }
        Ok(Sheet { columns, rows })
    }
}

/// Refuses a position (0-based row, column) outside the first `rows + 1` rows and
/// `columns` columns: beyond the rows it is a file with too many rows.
fn check_position(limits: &Limits, (row, col): (u32, u32), what: &str) -> Result<(), IotdaError> {
    if row >= limits.sheet_rows() {
        return Err(IotdaError::FileTooManyRows(format!(
            "{what} row {}; a task file holds a header and at most {} data rows",
            u64::from(row) + 1,
            limits.rows
        )));
    }
    if col >= limits.columns {
        return Err(unreadable(format!(
            "{what} column {}; a task file has at most {} columns",
            u64::from(col) + 1,
            limits.columns
        )));
    }
    Ok(())
}

/// Spreadsheets store "123" typed as a number as 123.0; a device id wants "123".
fn float_text(f: f64) -> Option<String> {
    (f.fract() == 0.0 && f.abs() < 1e15).then(|| format!("{}", f as i64))
}

fn cell_text<'a>(cell: &'a DataRef<'_>) -> Cow<'a, str> {
    match cell {
        DataRef::Empty => Cow::Borrowed(""),
        // Borrowed: a shared string is checked against the text limit before it is copied.
        DataRef::SharedString(s) => Cow::Borrowed(s),
        DataRef::String(s) => Cow::Borrowed(s),
        DataRef::Float(f) => Cow::Owned(float_text(*f).unwrap_or_else(|| f.to_string())),
        other => Cow::Owned(Data::from(other.clone()).to_string()),
    }
}

fn data_text(cell: &Data) -> Cow<'_, str> {
    match cell {
        Data::Empty => Cow::Borrowed(""),
        Data::String(s) => Cow::Borrowed(s),
        Data::Float(f) => Cow::Owned(float_text(*f).unwrap_or_else(|| f.to_string())),
        other => Cow::Owned(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_unreadable() {
        for bytes in [&b"PKfake-xlsx-bytes"[..], b"PK\x03\x04rest", b"", CFB_MAGIC] {
            assert!(
                matches!(
                    read_task_file(bytes, &Limits::TASK_FILE),
                    Err(IotdaError::FileUnreadable(_))
                ),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn shared_strings_are_counted_across_writes() {
        use std::io::Write;
        let xml = b"<sst><si><t>a</t></si><x:si/><si\n></si><sis><si";
        for split in 0..xml.len() {
            let mut c = SharedStrings::default();
            c.write_all(&xml[..split]).unwrap();
            c.write_all(&xml[split..]).unwrap();
            c.write_all(b">").unwrap();
            assert_eq!(c.count, 4, "split at {split}");
        }
    }

    #[test]
    fn positions_are_checked_against_the_limits() {
        let l = Limits::TASK_FILE;
        assert!(check_position(&l, (30_000, 31), "x").is_ok());
        assert!(matches!(
            check_position(&l, (30_001, 0), "x"),
            Err(IotdaError::FileTooManyRows(_))
        ));
        assert!(matches!(
            check_position(&l, (0, 32), "x"),
            Err(IotdaError::FileUnreadable(_))
        ));
    }
}
