//! [`RotatingFile`]: a log file a process rotates itself once it reaches a size, keeping a
//! stated number of older files (`NAME.log.1` newest … `NAME.log.N` oldest).
//!
//! Each log event is written whole: the writer [`RotatingFile::make_writer`] hands out
//! buffers the event, and the file takes it in one write under a lock, rotating first if the
//! event would carry the file past its bound. So no line is split between two files, and a
//! file grows beyond the bound only when a single line is larger than it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A log file rotated by size; see the module documentation.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    /// The open file and its size: one event at a time writes and rotates.
    current: Mutex<(File, u64)>,
}

/// The path of rotated file `n` of `path` (`NAME.log.n`).
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Opens `path` for appending, creating it owner-only (0600).
fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl RotatingFile {
    /// Opens (or creates, mode 0600) `path`, appending to what it holds; it is rotated once
    /// it would pass `max_bytes`, and `keep` rotated files are kept (0: none, the file
    /// starts again empty).
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: impl Into<PathBuf>, max_bytes: u64, keep: usize) -> io::Result<Self> {
        let path = path.into();
        let file = open(&path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path,
            max_bytes: max_bytes.max(1),
            keep,
            current: Mutex::new((file, size)),
        })
    }

    /// Appends `line` (one whole event) to the file, rotating it first when the line would
    /// carry a non-empty file past the bound.
    ///
    /// # Errors
    /// Writing or rotating failed.
    pub fn write_line(&self, line: &[u8]) -> io::Result<()> {
        // a panic elsewhere while holding the lock leaves the file as usable as before
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.1 > 0 && current.1 + line.len() as u64 > self.max_bytes {
            *current = (self.rotate()?, 0);
        }
        current.0.write_all(line)?;
        current.1 += line.len() as u64;
        Ok(())
    }

    /// Shifts `NAME.log.k` to `NAME.log.k+1` (the oldest falls off), `NAME.log` to
    /// `NAME.log.1`, and opens a new, empty `NAME.log`.
    fn rotate(&self) -> io::Result<File> {
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                match std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        open(&self.path)
    }
}

/// One event's bytes on their way to a [`RotatingFile`]: written whole when dropped.
pub struct EventWriter<'a> {
    file: &'a RotatingFile,
    buf: Vec<u8>,
}

impl Write for EventWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            // a log line that cannot be written has nowhere else to go
            let _ = self.file.write_line(&self.buf);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingFile {
    type Writer = EventWriter<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            file: self,
            buf: Vec::with_capacity(256),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_file_rotates_at_its_bound_keeps_n_files_and_splits_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web-1.log");
        let log = RotatingFile::open(&path, 100, 2).unwrap();
        // 30 lines of 21 bytes: four fit in 100 bytes, so each file holds four
        for i in 0..30 {
            let mut w = log.make_writer();
            // written in pieces, as a formatter may
            write!(w, "line {i:03} ").unwrap();
            writeln!(w, "of the test").unwrap();
        }
        drop(log);
        let (now, one, two) = (
            lines(&path),
            lines(&rotated(&path, 1)),
            lines(&rotated(&path, 2)),
        );
        assert!(
            !rotated(&path, 3).exists(),
            "only two rotated files are kept"
        );
        for file in [&path, &rotated(&path, 1), &rotated(&path, 2)] {
            let size = std::fs::metadata(file).unwrap().len();
            assert!(size <= 100, "{} holds {size} bytes", file.display());
        }
        // the newest lines, in order, whole, none lost between the kept files
        let all: Vec<String> = [two, one, now].concat();
        let want: Vec<String> = (20..30)
            .map(|i| format!("line {i:03} of the test"))
            .collect();
        assert_eq!(all, want);
    }

    #[test]
    fn a_reopened_file_counts_what_it_holds_and_a_line_larger_than_the_bound_stands_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.log");
        std::fs::write(&path, "x".repeat(90) + "\n").unwrap();
        let log = RotatingFile::open(&path, 100, 1).unwrap();
        log.write_line(b"0123456789\n").unwrap();
        assert_eq!(
            lines(&path),
            ["0123456789"],
            "91 + 11 bytes pass 100: rotated"
        );
        let big = "y".repeat(150) + "\n";
        log.write_line(big.as_bytes()).unwrap();
        assert_eq!(lines(&path), [big.trim_end()]);
        log.write_line(b"after\n").unwrap();
        assert_eq!(lines(&path), ["after"]);
        assert_eq!(lines(&rotated(&path, 1)), [big.trim_end()]);
    }

    #[test]
    fn a_new_log_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.log");
        let log = RotatingFile::open(&path, 10, 1).unwrap();
        log.write_line(b"first line\n").unwrap();
        log.write_line(b"second line\n").unwrap();
        for file in [path.clone(), rotated(&path, 1)] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        }
    }
}
