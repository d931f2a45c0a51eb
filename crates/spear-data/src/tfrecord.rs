//! TFRecord files, read as a stream: each record is
//! `length: u64 LE | masked CRC-32C of the 8 length bytes: u32 LE | data | masked CRC-32C of data: u32 LE`
//! (TensorFlow's `core/lib/io/record_writer.cc`). Both checksums are verified. A record whose
//! data checksum fails can be skipped (its length is trustworthy); a bad length checksum or a
//! truncated file ends the file, since the framing after it cannot be trusted.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// CRC-32C (Castagnoli) of `data`: the `crc32c` crate, which uses the CPU's CRC instructions
/// (SSE 4.2, ARMv8) and tables elsewhere; checksumming was 8 % of the data pipeline's time with
/// slicing-by-8 tables.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// TFRecord's masked checksum: the CRC rotated right by 15 bits plus a constant, so that a
/// checksum of data that itself holds checksums is not trivially related to them.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xA282_EAD8)
}

/// What went wrong at one place of a TFRecord file.
#[derive(Debug, thiserror::Error)]
pub enum TfRecordError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A checksum, a length or the file's end is not what the framing says.
    #[error("{path}: record {record} at byte {offset}: {problem}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Index of the record in the file.
        record: u64,
        /// Byte offset where the record starts.
        offset: u64,
        /// What is wrong.
        problem: String,
    },
}

/// What to do with a record whose data checksum fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCorrupt {
    /// Return the error (the default: silent data loss is worse than a stop).
    Fail,
    /// Skip the record and count it ([`TfRecordReader::skipped`]); framing errors still end the file.
    Skip,
}

/// A streaming reader of one TFRecord file: an iterator of record payloads.
pub struct TfRecordReader<R: Read> {
    reader: R,
    path: PathBuf,
    offset: u64,
    record: u64,
    on_corrupt: OnCorrupt,
    skipped: Vec<TfRecordError>,
    done: bool,
    last: (u64, u64),
    /// The file's size when known: a length field beyond it is damage, not an allocation to try.
    size: Option<u64>,
}

/// Writes TFRecord framing: for each record its length (u64, little-endian), the masked CRC-32C
/// of those 8 bytes, the bytes, and their masked CRC-32C — what `tf.io.TFRecordWriter` writes
/// (uncompressed).
pub struct TfRecordWriter<W: std::io::Write> {
    writer: W,
    path: PathBuf,
    records: u64,
}

impl TfRecordWriter<std::io::BufWriter<File>> {
    /// Creates (or truncates) `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, TfRecordError> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|source| TfRecordError::Io { path: path.clone(), source })?;
        Ok(Self::new(std::io::BufWriter::new(file), path))
    }
}

impl<W: std::io::Write> TfRecordWriter<W> {
    /// Writes records to `writer`; `path` names it in errors.
    pub fn new(writer: W, path: PathBuf) -> Self {
        Self { writer, path, records: 0 }
    }

    /// Appends one record.
    pub fn write_record(&mut self, data: &[u8]) -> Result<(), TfRecordError> {
        let length = (data.len() as u64).to_le_bytes();
        let io = |source| TfRecordError::Io { path: self.path.clone(), source };
        self.writer.write_all(&length).map_err(io)?;
        self.writer.write_all(&masked_crc32c(&length).to_le_bytes()).map_err(io)?;
        self.writer.write_all(data).map_err(io)?;
        self.writer.write_all(&masked_crc32c(data).to_le_bytes()).map_err(io)?;
        self.records += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> Result<W, TfRecordError> {
        self.writer.flush().map_err(|source| TfRecordError::Io { path: self.path.clone(), source })?;
        Ok(self.writer)
    }
}

impl TfRecordReader<BufReader<File>> {
    /// Opens `path` for buffered streaming.
    pub fn open(path: impl AsRef<Path>, on_corrupt: OnCorrupt) -> Result<Self, TfRecordError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| TfRecordError::Io { path: path.clone(), source })?;
        let size = file.metadata().map_err(|source| TfRecordError::Io { path: path.clone(), source })?.len();
        let mut reader = Self::new(BufReader::with_capacity(1 << 20, file), path, on_corrupt);
        reader.size = Some(size);
        Ok(reader)
    }
}

impl<R: Read> TfRecordReader<R> {
    /// Reads records from `reader`; `path` names it in errors.
    pub fn new(reader: R, path: PathBuf, on_corrupt: OnCorrupt) -> Self {
        Self {
            reader,
            path,
            offset: 0,
            record: 0,
            on_corrupt,
            skipped: Vec::new(),
            done: false,
            last: (0, 0),
            size: None,
        }
    }

    /// The records skipped so far (in [`OnCorrupt::Skip`] mode), each with its error.
    pub fn skipped(&self) -> &[TfRecordError] {
        &self.skipped
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Index and byte offset of the record returned last.
    pub fn last_record(&self) -> (u64, u64) {
        self.last
    }

    fn corrupt(&self, start: u64, problem: String) -> TfRecordError {
        TfRecordError::Corrupt { path: self.path.clone(), record: self.record, offset: start, problem }
    }

    /// Fills `buf` completely; `Ok(false)` at a clean end of file before the first byte.
    fn fill(&mut self, buf: &mut [u8], start: u64, what: &str) -> Result<bool, TfRecordError> {
        let mut read = 0;
        while read < buf.len() {
            match self.reader.read(&mut buf[read..]) {
                Ok(0) if read == 0 && what == "length" => return Ok(false),
                Ok(0) => {
                    return Err(self.corrupt(
                        start,
                        format!("file ends inside the {what} ({read} of {} bytes)", buf.len()),
                    ));
                }
                Ok(n) => read += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => return Err(TfRecordError::Io { path: self.path.clone(), source }),
            }
        }
        self.offset += buf.len() as u64;
        Ok(true)
    }

    fn next_record(&mut self) -> Result<Option<Vec<u8>>, TfRecordError> {
        loop {
            let start = self.offset;
            let mut header = [0u8; 12];
            if !self.fill(&mut header, start, "length")? {
                return Ok(None);
            }
            let length_bytes: [u8; 8] = header[..8].try_into().expect("8 bytes");
            let stored = u32::from_le_bytes(header[8..].try_into().expect("4 bytes"));
            if masked_crc32c(&length_bytes) != stored {
                return Err(
                    self.corrupt(start, "length checksum mismatch (not a TFRecord file, or damaged)".into())
                );
            }
            let length = u64::from_le_bytes(length_bytes);
            // Checked before allocating: a damaged length must not ask for terabytes.
            let available = self.size.map(|size| size.saturating_sub(start + 12));
            if let Some(available) = available.filter(|&a| length > a) {
                return Err(self.corrupt(
                    start,
                    format!("file ends inside the record data ({available} of {length} bytes)"),
                ));
            }
            let length = usize::try_from(length)
                .map_err(|_| self.corrupt(start, format!("record length {length} does not fit in memory")))?;
            let mut data = vec![0u8; length];
            self.fill(&mut data, start, "record data")?;
            let mut footer = [0u8; 4];
            self.fill(&mut footer, start, "data checksum")?;
            let index = self.record;
            self.record += 1;
            if masked_crc32c(&data) == u32::from_le_bytes(footer) {
                self.last = (index, start);
                return Ok(Some(data));
            }
            let error = TfRecordError::Corrupt {
                path: self.path.clone(),
                record: index,
                offset: start,
                problem: format!("data checksum mismatch ({length} bytes)"),
            };
            match self.on_corrupt {
                OnCorrupt::Fail => return Err(error),
                OnCorrupt::Skip => self.skipped.push(error),
            }
        }
    }
}

/// The byte offset of every record of a TFRecord file, from the record headers alone (each length
/// checksum verified; the data is skipped, not read), for random access with [`read_record_at`].
pub fn record_offsets(path: impl AsRef<Path>) -> Result<Vec<u64>, TfRecordError> {
    let path = path.as_ref();
    let io = |source| TfRecordError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let corrupt = |record: usize, offset: u64, problem: String| TfRecordError::Corrupt {
        path: path.to_path_buf(),
        record: record as u64,
        offset,
        problem,
    };
    let mut offsets = Vec::new();
    let mut offset = 0u64;
    while offset < size {
        let mut header = [0u8; 12];
        if size - offset < 12 {
            return Err(corrupt(
                offsets.len(),
                offset,
                format!("file ends inside the length ({} of 12 bytes)", size - offset),
            ));
        }
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        file.read_exact(&mut header).map_err(io)?;
        let length_bytes: [u8; 8] = header[..8].try_into().expect("8 bytes");
        if masked_crc32c(&length_bytes) != u32::from_le_bytes(header[8..].try_into().expect("4 bytes")) {
            return Err(corrupt(
                offsets.len(),
                offset,
                "length checksum mismatch (not a TFRecord file, or damaged)".into(),
            ));
        }
        let end = offset
            .checked_add(16)
            .and_then(|o| o.checked_add(u64::from_le_bytes(length_bytes)))
            .filter(|&end| end <= size)
            .ok_or_else(|| corrupt(offsets.len(), offset, "file ends inside the record data".into()))?;
        offsets.push(offset);
        offset = end;
    }
    Ok(offsets)
}

/// Reads record number `record` of `path`, which starts at byte `offset` (from
/// [`record_offsets`]), verifying both checksums.
pub fn read_record_at(path: impl AsRef<Path>, offset: u64, record: u64) -> Result<Vec<u8>, TfRecordError> {
    let path = path.as_ref().to_path_buf();
    let io = |source| TfRecordError::Io { path: path.clone(), source };
    let mut file = File::open(&path).map_err(io)?;
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut reader = TfRecordReader::new(BufReader::new(file), path.clone(), OnCorrupt::Fail);
    (reader.offset, reader.record) = (offset, record);
    reader.next().unwrap_or_else(|| {
        Err(TfRecordError::Corrupt {
            path: path.clone(),
            record,
            offset,
            problem: "no record at this offset".into(),
        })
    })
}

impl<R: Read> Iterator for TfRecordReader<R> {
    type Item = Result<Vec<u8>, TfRecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_record().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_values() {
        // RFC 3720 B.4 and the usual "123456789" check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
        assert_eq!(crc32c(b""), 0);
    }
}
