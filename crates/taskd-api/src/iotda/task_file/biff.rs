//! An xls workbook checked before calamine parses it.
//!
//! calamine's `Xls::new` reads every sheet into a dense range when it opens the file:
//! it reserves what a DIMENSIONS record declares, sizes each sheet's grid by its
//! farthest cell (a cell at row 65535, column 65535 is a 2^32-cell grid), copies a
//! shared string into every cell that names it and renders every formula into text.
//! Its compound-file reader follows sector chains without checking for loops. None of
//! that can be limited through its API, so before it sees the file:
//!
//! 1. the compound file is opened with the `cfb` crate (which checks chains and sizes)
//!    and only its workbook stream is kept, at most `inflated_bytes` long;
//! 2. the stream's records are walked the way calamine walks them (the globals up to
//!    their EOF, then each sheet from its BOUNDSHEET offset to its EOF) and the file is
//!    refused when a DIMENSIONS or a cell lies outside the limits, when the grids and
//!    cells of all sheets together pass three full task files' worth of cells, or when
//!    the strings calamine would make pass the text limit;
//! 3. formula and defined-name expressions are blanked in place: taskd reads the values
//!    formulas cached, and an expression renders to text many times its size;
//! 4. the stream goes to calamine in a new compound file written by `cfb`.
//!
//! Record layouts are those of [MS-XLS] 2.4 (BIFF8; BIFF5 shares the ones used here).

use std::io::{Cursor, Read, Write};
use std::ops::Range;

use super::{Limits, check_position, unreadable};
use crate::iotda::error::IotdaError;

const FORMULA: u16 = 0x0006;
const EOF: u16 = 0x000A;
const LBL: u16 = 0x0018;
const CONTINUE: u16 = 0x003C;
const CODEPAGE: u16 = 0x0042;
const BOUNDSHEET: u16 = 0x0085;
const MULRK: u16 = 0x00BD;
const SST: u16 = 0x00FC;
const LABELSST: u16 = 0x00FD;
const DIMENSIONS: u16 = 0x0200;
const NUMBER: u16 = 0x0203;
const LABEL: u16 = 0x0204;
const BOOLERR: u16 = 0x0205;
const STRING: u16 = 0x0207;
const RK: u16 = 0x027E;

/// UTF-16LE: a 16-bit unit decodes to at most 3 UTF-8 bytes. Under any other code page
/// calamine feeds each character as two bytes to a decoder that may make 3 of each.
const CODEPAGE_UTF16: u16 = 1200;
/// The size of a `String`, which every shared string costs however short.
const STRING_HEADER: u64 = 24;

/// The workbook stream of `bytes`, checked and blanked, in a new compound file.
pub(super) fn checked_workbook(bytes: &[u8], limits: &Limits) -> Result<Vec<u8>, IotdaError> {
    let mut stream = workbook_stream(bytes, limits)?;
    let blanks = check_records(&stream, limits)?;
    for at in blanks {
        stream[at..at + 2].fill(0);
    }
    rebuild(&stream).map_err(unreadable)
}

fn workbook_stream(bytes: &[u8], limits: &Limits) -> Result<Vec<u8>, IotdaError> {
    let mut file = cfb::CompoundFile::open(Cursor::new(bytes)).map_err(unreadable)?;
    let path = ["/Workbook", "/Book"]
        .into_iter()
        .find(|p| file.is_stream(p))
        .ok_or_else(|| unreadable("it has no workbook stream"))?;
    let stream = file.open_stream(path).map_err(unreadable)?;
    let mut out = Vec::new();
    stream
        .take(limits.inflated_bytes + 1)
        .read_to_end(&mut out)
        .map_err(unreadable)?;
    if out.len() as u64 > limits.inflated_bytes {
        return Err(unreadable(format!(
            "its workbook stream is longer than {} bytes",
            limits.inflated_bytes
        )));
    }
    Ok(out)
}

fn rebuild(stream: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut file =
        cfb::CompoundFile::create_with_version(cfb::Version::V3, Cursor::new(Vec::new()))?;
    file.create_stream("/Workbook")?.write_all(stream)?;
    file.flush()?;
    Ok(file.into_inner().into_inner())
}

/// A record and the CONTINUE records after it, as calamine groups them.
struct Record {
    typ: u16,
    data: Range<usize>,
    more: Vec<Range<usize>>,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn bad(msg: &str) -> IotdaError {
    unreadable(format!("its workbook stream is malformed: {msg}"))
}

fn next_record(stream: &[u8], at: &mut usize) -> Result<Option<Record>, IotdaError> {
    let header = |at: usize| -> Result<(u16, Range<usize>), IotdaError> {
        let rest = &stream[at..];
        if rest.len() < 4 {
            return Err(bad("a record header is cut short"));
        }
        let len = usize::from(u16_at(rest, 2));
        if rest.len() < 4 + len {
            return Err(bad("a record is cut short"));
        }
        Ok((u16_at(rest, 0), at + 4..at + 4 + len))
    };
    if *at >= stream.len() {
        return Ok(None);
    }
    let (typ, data) = header(*at)?;
    *at = data.end;
    let mut more = Vec::new();
    while stream.len() - *at > 4 && u16_at(stream, *at) == CONTINUE {
        let (_, data) = header(*at)?;
        *at = data.end;
        more.push(data);
    }
    Ok(Some(Record { typ, data, more }))
}

/// What calamine will hold, added up as the records are walked.
struct Cost<'l> {
    limits: &'l Limits,
    /// Grid cells reserved or filled, and sparse cells, over all sheets.
    cells: u64,
    /// Bytes of strings.
    text: u64,
}

impl Cost<'_> {
    fn cells(&mut self, n: u64) -> Result<(), IotdaError> {
        self.cells = self.cells.saturating_add(n);
        let max = 3 * u64::from(self.limits.sheet_rows()) * u64::from(self.limits.columns);
        if self.cells > max {
            return Err(unreadable(format!(
                "its sheets together span more than {max} cells"
            )));
        }
        Ok(())
    }

    fn text(&mut self, n: u64) -> Result<(), IotdaError> {
        self.text = self.text.saturating_add(n);
        if self.text > self.limits.text_bytes {
            return Err(unreadable(format!(
                "its cells hold more than {} bytes of text",
                self.limits.text_bytes
            )));
        }
        Ok(())
    }
}

/// The smallest box holding some cells, as (first row, last row, first col, last col).
#[derive(Default)]
struct Bounds(Option<(u32, u32, u32, u32)>);

impl Bounds {
    fn add(&mut self, (row, col): (u32, u32)) {
        let b = self.0.get_or_insert((row, row, col, col));
        *b = (b.0.min(row), b.1.max(row), b.2.min(col), b.3.max(col));
    }

    fn area(&self) -> u64 {
        self.0.map_or(0, |(r0, r1, c0, c1)| {
            u64::from(r1 - r0 + 1) * u64::from(c1 - c0 + 1)
        })
    }
}

/// Walks the stream and returns the offsets of the two-byte expression lengths to blank.
fn check_records(stream: &[u8], limits: &Limits) -> Result<Vec<usize>, IotdaError> {
    let mut cost = Cost {
        limits,
        cells: 0,
        text: 0,
    };
    let mut blanks = Vec::new();
    let mut sheets = Vec::new();
    let mut strings: Vec<u64> = Vec::new();
    let mut utf16 = true;
    let mut at = 0;
    while let Some(r) = next_record(stream, &mut at)? {
        let data = &stream[r.data.clone()];
        match r.typ {
            EOF => break,
            CODEPAGE if data.len() >= 2 => utf16 = u16_at(data, 0) == CODEPAGE_UTF16,
            BOUNDSHEET if data.len() >= 6 => sheets.push(u32_at(data, 0) as usize),
            SST => {
                strings = sst_lengths(stream, &r, if utf16 { 3 } else { 6 })?;
                let total: u64 = strings.iter().map(|s| STRING_HEADER + s).sum();
                cost.text(total)?;
            }
            LBL if data.len() >= 15 => blanks.push(r.data.start + 4),
            CODEPAGE | BOUNDSHEET | LBL => return Err(bad("a workbook record is too short")),
            _ => (),
        }
    }
    for pos in sheets {
        if pos > stream.len() {
            return Err(bad("a sheet starts beyond the stream"));
        }
        check_sheet(stream, pos, limits, &strings, &mut cost, &mut blanks)?;
    }
    Ok(blanks)
}

fn check_sheet(
    stream: &[u8],
    mut at: usize,
    limits: &Limits,
    strings: &[u64],
    cost: &mut Cost<'_>,
    blanks: &mut Vec<usize>,
) -> Result<(), IotdaError> {
    let mut values = Bounds::default();
    let mut formulas = Bounds::default();
    let cell = |data: &[u8], min_len: usize| -> Result<(u32, u32), IotdaError> {
        if data.len() < min_len.max(4) {
            return Err(bad("a cell record is too short"));
        }
        let pos = (u32::from(u16_at(data, 0)), u32::from(u16_at(data, 2)));
        check_position(limits, pos, "a cell lies at")?;
        Ok(pos)
    };
    while let Some(r) = next_record(stream, &mut at)? {
        let data = &stream[r.data.clone()];
        match r.typ {
            EOF => break,
            DIMENSIONS => cost.cells(dimensions(data, limits)?)?,
            NUMBER | BOOLERR | RK => {
                values.add(cell(data, 4)?);
                cost.cells(1)?;
            }
            LABEL => {
                values.add(cell(data, 8)?);
                cost.cells(1)?;
                // calamine reserves the declared length, then decodes what is there.
                cost.text(u64::from(u16_at(data, 6)) + 6 * data.len() as u64)?;
            }
            LABELSST => {
                values.add(cell(data, 10)?);
                cost.cells(1)?;
                if let Some(len) = strings.get(u32_at(data, 6) as usize) {
                    cost.text(*len)?;
                }
            }
            MULRK => {
                if data.len() < 6 {
                    return Err(bad("a cell record is too short"));
                }
                let row = u32::from(u16_at(data, 0));
                let (first, last) = (u16_at(data, 2), u16_at(data, data.len() - 2));
                if last < first {
                    return Err(bad("a MULRK record ends before it starts"));
                }
                for col in [first, last] {
                    let pos = (row, u32::from(col));
                    check_position(limits, pos, "a cell lies at")?;
                    values.add(pos);
                }
                cost.cells(u64::from(last - first) + 1)?;
            }
            STRING => {
                if data.len() < 2 {
                    return Err(bad("a STRING record is too short"));
                }
                cost.text(u64::from(u16_at(data, 0)) + 6 * data.len() as u64)?;
            }
            FORMULA => {
                let pos = cell(data, 22)?;
                values.add(pos);
                formulas.add(pos);
                // The value, and the expression's (blanked) text.
                cost.cells(2)?;
                blanks.push(r.data.start + 20);
            }
            _ => (),
        }
    }
    cost.cells(values.area())?;
    cost.cells(formulas.area())
}

/// The cells calamine reserves for a DIMENSIONS record, refused when it reaches beyond
/// the limits or is inverted (calamine would compute a negative size).
fn dimensions(data: &[u8], limits: &Limits) -> Result<u64, IotdaError> {
    // First row, last row + 1, first column, last column + 1.
    let (rf, rl, cf, cl) = match data.len() {
        10 => (
            u32::from(u16_at(data, 0)),
            u32::from(u16_at(data, 2)),
            u32::from(u16_at(data, 4)),
            u32::from(u16_at(data, 6)),
        ),
        14 => (
            u32_at(data, 0),
            u32_at(data, 4),
            u32::from(u16_at(data, 8)),
            u32::from(u16_at(data, 10)),
        ),
        _ => return Err(bad("a DIMENSIONS record has the wrong length")),
    };
    if rl == 0 || cl == 0 {
        return Ok(1);
    }
    check_position(
        limits,
        (rl - 1, cl - 1),
        "the sheet's declared dimension reaches",
    )?;
    // calamine reads a first column past 0xFF (or past the last) as 0.
    let cf = if cf > 0xFF || cl < cf { 0 } else { cf };
    if rf > rl - 1 || cf > cl - 1 {
        return Err(bad("a DIMENSIONS record is inverted"));
    }
    Ok(u64::from(rl - rf) * u64::from(cl - cf))
}

/// The most bytes each shared string can take once calamine has decoded it, in table
/// order, walking the SST record and its CONTINUE records as calamine does: a string's
/// characters may go on in the next record, which then starts with a new high-byte flag.
fn sst_lengths(stream: &[u8], r: &Record, per_char: u64) -> Result<Vec<u64>, IotdaError> {
    let mut chunks = r.more.iter().map(|c| &stream[c.clone()]);
    let mut data = &stream[r.data.clone()];
    if data.len() < 8 {
        return Err(bad("the SST record is too short"));
    }
    data = &data[8..];
    let short = || bad("a shared string is cut short");
    let mut lengths = Vec::new();
    loop {
        if data.is_empty() {
            match chunks.next() {
                Some(next) => data = next,
                None => break,
            }
        }
        if data.len() < 3 {
            return Err(short());
        }
        let cch = usize::from(u16_at(data, 0));
        let flags = data[2];
        data = &data[3..];
        let mut skip = 0usize;
        if flags & 0x8 != 0 {
            if data.len() < 2 {
                return Err(short());
            }
            skip += 4 * usize::from(u16_at(data, 0));
            data = &data[2..];
        }
        if flags & 0x4 != 0 {
            if data.len() < 4 {
                return Err(short());
            }
            let ext = i32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            skip += usize::try_from(ext).map_err(|_| short())?;
            data = &data[4..];
        }
        let mut high = flags & 0x1 != 0;
        let mut left = cch;
        loop {
            let unit = if high { 2 } else { 1 };
            let n = left.min(data.len() / unit);
            data = &data[n * unit..];
            left -= n;
            if left == 0 {
                break;
            }
            data = chunks.next().ok_or_else(short)?;
            let (&flag, rest) = data.split_first().ok_or_else(short)?;
            high = flag & 0x1 != 0;
            data = rest;
        }
        while skip > 0 {
            if data.is_empty() {
                data = chunks.next().ok_or_else(short)?;
                continue;
            }
            let n = skip.min(data.len());
            data = &data[n..];
            skip -= n;
        }
        lengths.push(per_char * cch as u64);
    }
    Ok(lengths)
}
