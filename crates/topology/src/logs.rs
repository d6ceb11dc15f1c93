//! `crescendo logs`: every process's log of a topology, merged in time order.
//!
//! Crescendo's own processes (web nodes, workers, the autoscaler, the alert sink, the NATS
//! exporters) write JSON lines to `RUN_DIR/NAME.log` and rotate it themselves (settings
//! `log.*`), with their standard output and error (start-up lines, a panic) beside it in
//! `RUN_DIR/NAME.stdout.log`. The other servers keep their logs as they write them, where
//! `state.json` says. Each file is read with its rotated files first (`NAME.log.3` …
//! `NAME.log.1`, then `NAME.log`); a line's time is read from the line itself
//! ([`crate::logs_time`]) and a line without one takes the time of the line before it in the
//! same file, so files merge by time and each file keeps its own order.

use crate::logs_time::{self, Nanos};
use crate::state::{Role, State};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Which lines to show.
#[derive(Clone, Debug, Default)]
pub struct LogFilter {
    /// Only processes of these roles (none: every role).
    pub roles: Vec<Role>,
    /// Only processes of these names (none: every name).
    pub names: Vec<String>,
    /// Only lines written at or after this time.
    pub since: Option<Nanos>,
}

impl LogFilter {
    fn wants(&self, s: &Source) -> bool {
        (self.roles.is_empty() || self.roles.contains(&s.role))
            && (self.names.is_empty() || self.names.contains(&s.name))
    }
}

/// One log file of one process.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    /// The process's name, as `status` gives it.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The file (its rotated files are beside it).
    pub path: PathBuf,
}

/// One line of a log.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The process that wrote it.
    pub name: String,
    /// That process's role.
    pub role: Role,
    /// When it was written: its own time, or the time of the line before it in its file.
    pub at: Option<Nanos>,
    /// Whether `at` is the line's own time.
    pub timed: bool,
    /// The line.
    pub text: String,
}

/// Where a `crescendo` process `up` started sends its standard output and error.
pub fn stdout_log(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join(format!("{name}.stdout.log"))
}

/// The role of a `crescendo` process that has left the state, by its name.
fn role_by_name(name: &str) -> Option<Role> {
    let (prefix, n) = name.rsplit_once('-')?;
    n.parse::<usize>().ok()?;
    match prefix {
        "web" => Some(Role::Web),
        "worker" => Some(Role::Worker),
        _ => None,
    }
}

/// The log files of the topology in `run_dir` that `filter` wants: every process of its
/// state, web nodes and workers that have left it (their logs stay in the run directory),
/// and the standard output of each `crescendo` process.
pub fn sources(run_dir: &Path, filter: &LogFilter) -> Vec<Source> {
    let mut out: Vec<Source> = State::read(run_dir)
        .map(|s| s.processes)
        .unwrap_or_default()
        .into_iter()
        .map(|p| Source {
            name: p.name,
            role: p.role,
            path: p.log,
        })
        .collect();
    let mut left: Vec<Source> = std::fs::read_dir(run_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().into_string().ok()?;
            let name = file.strip_suffix(".log")?;
            let role = role_by_name(name)?;
            Some(Source {
                name: name.to_string(),
                role,
                path: e.path(),
            })
        })
        .filter(|s| !out.iter().any(|o| o.name == s.name))
        .collect();
    left.sort_by(|a, b| a.name.cmp(&b.name));
    out.extend(left);
    let stdout: Vec<Source> = out
        .iter()
        .filter(|s| s.path == run_dir.join(format!("{}.log", s.name)))
        .map(|s| Source {
            path: stdout_log(run_dir, &s.name),
            ..s.clone()
        })
        .filter(|s| s.path.is_file())
        .collect();
    out.extend(stdout);
    out.retain(|s| filter.wants(s));
    out
}

/// The rotated files of `path` that exist, oldest first (`PATH.N` … `PATH.1`).
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for n in 1.. {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        let file = PathBuf::from(name);
        if !file.is_file() {
            break;
        }
        files.push(file);
    }
    files.reverse();
    files
}

/// A log file being read: where it was left, following it through rotation.
pub struct Tail {
    source: Source,
    /// The file as opened (a rotated file stays readable through it after the rename).
    file: Option<File>,
    /// That file's inode, to notice when the path names a new file.
    inode: u64,
    /// The end of the file when it did not end a line yet.
    partial: Vec<u8>,
    /// The time of the last line that had one.
    last: Option<Nanos>,
}

impl Tail {
    /// Starts reading `source`; returns it with every line its files hold now, rotated ones
    /// first.
    pub fn open(source: Source) -> (Self, Vec<Entry>) {
        let mut tail = Self {
            source,
            file: None,
            inode: 0,
            partial: Vec::new(),
            last: None,
        };
        let mut lines = Vec::new();
        for file in rotated_files(&tail.source.path) {
            let text = std::fs::read(&file).unwrap_or_default();
            tail.take(&text, &mut lines);
            if !tail.partial.is_empty() {
                let rest = std::mem::take(&mut tail.partial);
                tail.take(&[rest.as_slice(), b"\n"].concat(), &mut lines);
            }
        }
        lines.extend(tail.read_new());
        (tail, lines)
    }

    /// The lines written since the last call, from the file rotated away first if it was.
    pub fn read_new(&mut self) -> Vec<Entry> {
        let mut text = Vec::new();
        let now = std::fs::metadata(&self.source.path).ok().map(|m| m.ino());
        if let Some(f) = &mut self.file {
            let _ = f.read_to_end(&mut text);
        }
        if now.is_some() && now != Some(self.inode) {
            // rotated (or first seen): what the old file held is read above, now the new one
            if let Ok(mut f) = File::open(&self.source.path) {
                self.inode = f.metadata().map_or(0, |m| m.ino());
                let _ = f.read_to_end(&mut text);
                self.file = Some(f);
            }
        }
        let mut lines = Vec::new();
        self.take(&text, &mut lines);
        lines
    }

    /// Adds the whole lines of `partial` + `bytes` to `out`, keeping an unfinished end.
    fn take(&mut self, bytes: &[u8], out: &mut Vec<Entry>) {
        self.partial.extend_from_slice(bytes);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let rest = self.partial.split_off(end + 1);
        let done = std::mem::replace(&mut self.partial, rest);
        for line in String::from_utf8_lossy(&done).lines() {
            let own = logs_time::parse(line);
            if own.is_some() {
                self.last = own;
            }
            out.push(Entry {
                name: self.source.name.clone(),
                role: self.source.role,
                at: self.last,
                timed: own.is_some(),
                text: line.to_string(),
            });
        }
    }
}

/// Merges lists of entries, each in its own file's order, by time; a file's order is kept,
/// and lines with no time yet come first.
pub fn merge(lists: Vec<Vec<Entry>>) -> Vec<Entry> {
    let mut lists: Vec<std::vec::IntoIter<Entry>> =
        lists.into_iter().map(IntoIterator::into_iter).collect();
    let mut heads: Vec<Option<Entry>> = lists.iter_mut().map(Iterator::next).collect();
    let mut heap: BinaryHeap<Reverse<(Option<Nanos>, usize)>> = heads
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.as_ref().map(|e| Reverse((e.at, i))))
        .collect();
    let mut out = Vec::new();
    while let Some(Reverse((_, i))) = heap.pop() {
        let entry = heads[i].take().expect("a list in the heap has a head");
        out.push(entry);
        heads[i] = lists[i].next();
        if let Some(e) = &heads[i] {
            heap.push(Reverse((e.at, i)));
        }
    }
    out
}

/// Prints (through `print`) the logs of the topology in `run_dir` that `filter` wants,
/// merged in time order; with `follow`, then keeps printing new lines as they are written
/// (through rotations, and from processes that join), every 250 ms, until `print` fails.
///
/// # Errors
/// No log is found, or `print` fails (a closed pipe ends a follow this way).
pub fn show(
    run_dir: &Path,
    filter: &LogFilter,
    follow: bool,
    mut print: impl FnMut(&Entry) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut tails = Vec::new();
    let mut batch = Vec::new();
    let open_new = |tails: &mut Vec<Tail>, batch: &mut Vec<Vec<Entry>>| {
        for s in sources(run_dir, filter) {
            if !tails.iter().any(|t: &Tail| t.source == s) {
                let (tail, lines) = Tail::open(s);
                tails.push(tail);
                batch.push(lines);
            }
        }
    };
    open_new(&mut tails, &mut batch);
    if tails.is_empty() {
        anyhow::bail!("no logs in {} for this choice", run_dir.display());
    }
    loop {
        for e in merge(std::mem::take(&mut batch)) {
            if filter.since.is_none_or(|t| e.at.is_some_and(|at| at >= t)) {
                print(&e)?;
            }
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
        batch = tails.iter_mut().map(Tail::read_new).collect();
        open_new(&mut tails, &mut batch);
    }
}

/// `role` as `status --json` names it.
fn role_name(role: Role) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// `e` for people: the process's name, then for a JSON line its time, level, target,
/// message, request ID and fields, for any other line the line.
pub fn human(e: &Entry) -> String {
    let v: Option<serde_json::Map<String, serde_json::Value>> = e
        .text
        .starts_with('{')
        .then(|| serde_json::from_str(&e.text).ok())
        .flatten();
    let Some(v) = v.filter(|v| v.contains_key("level")) else {
        return format!("{:>14} | {}", e.name, e.text);
    };
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
    let mut line = format!(
        "{:>14} | {} {:>5} {}: {}",
        e.name,
        text("timestamp"),
        text("level"),
        text("target"),
        text("message")
    );
    if let Some(id) = v.get("request_id").and_then(|x| x.as_str()) {
        line.push_str(&format!(" request_id={id}"));
    }
    if let Some(fields) = v.get("fields").and_then(|f| f.as_object()) {
        for (k, x) in fields {
            match x.as_str() {
                Some(s) => line.push_str(&format!(" {k}={s}")),
                None => line.push_str(&format!(" {k}={x}")),
            }
        }
    }
    line
}

/// `e` as one JSON object: a JSON line's own members with `process` and `role` added; any
/// other line as `{"process","role","timestamp","message"}` (`timestamp` when the line has
/// a time of its own).
pub fn json(e: &Entry) -> String {
    let mut v = e
        .text
        .starts_with('{')
        .then(|| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&e.text).ok())
        .flatten()
        .unwrap_or_else(|| {
            let mut m = serde_json::Map::new();
            if let (true, Some(at)) = (e.timed, e.at) {
                m.insert("timestamp".into(), logs_time::format(at).into());
            }
            m.insert("message".into(), e.text.clone().into());
            m
        });
    v.insert("process".into(), e.name.clone().into());
    v.insert("role".into(), role_name(e.role).into());
    serde_json::Value::Object(v).to_string()
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;
