//! Where the CPU goes: the CPU time of every process of a topology, read from `/proc` before
//! and after a run, per role and per request, with the load generator (this process) apart.
//!
//! A process's CPU is its own user and system time, plus that of its live descendants (a
//! PostgreSQL postmaster's backends, HAProxy's worker), plus what its exited children used
//! (`cutime` and `cstime`, which the kernel adds to a parent when it reaps a child: the
//! backends that closed during the run). A descendant that is itself one of the topology's
//! processes is counted under its own role, never twice.

use crescendo_topology::state::State;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

/// One process the sampler follows: a topology's process, or a local server given by PID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its role, as `crescendo status --json` names it (`web`, `pg-primary`, `redis`…).
    pub role: String,
    /// Its name (`web-1`, `pg-r1`…).
    pub name: String,
    /// Its PID.
    pub pid: u32,
}

/// Every process `state.json` lists, with its role.
pub fn members_of(state: &State) -> Vec<Member> {
    state
        .processes
        .iter()
        .map(|p| Member {
            role: serde_json::to_value(p.role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{:?}", p.role)),
            name: p.name.clone(),
            pid: p.pid,
        })
        .collect()
}

/// The fields of a `/proc/PID/stat` line the sampler uses; times in clock ticks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// The process's PID.
    pub pid: u32,
    /// Its command name (`comm`), which may hold spaces and parentheses.
    pub comm: String,
    /// Its parent's PID.
    pub ppid: u32,
    /// User time.
    pub utime: u64,
    /// System time.
    pub stime: u64,
    /// User time of its children that have exited and been reaped.
    pub cutime: u64,
    /// System time of its children that have exited and been reaped.
    pub cstime: u64,
}

impl Stat {
    /// Its own time plus that of its reaped children.
    pub fn ticks(&self) -> u64 {
        self.utime + self.stime + self.cutime + self.cstime
    }
}

/// Parses one `/proc/PID/stat` line. The command name sits between the first `(` and the
/// last `)`, since it may itself hold either; the numbered fields follow the last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let (head, rest) = line.split_once('(')?;
    let (comm, fields) = rest.rsplit_once(')')?;
    let f: Vec<&str> = fields.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        pid: head.trim().parse().ok()?,
        comm: comm.to_string(),
        ppid: u32::try_from(num(1)?).ok()?,
        utime: num(11)?,
        stime: num(12)?,
        cutime: num(13)?,
        cstime: num(14)?,
    })
}

/// Clock ticks per second, as the kernel gave this process in its auxiliary vector
/// (`AT_CLKTCK` in `/proc/self/auxv`); 100, Linux's value everywhere, if it cannot be read.
pub fn clock_ticks() -> u64 {
    const AT_CLKTCK: usize = 17;
    const WORD: usize = std::mem::size_of::<usize>();
    let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
        return 100;
    };
    auxv.chunks_exact(2 * WORD)
        .map(|pair| {
            let word = |b: &[u8]| usize::from_ne_bytes(b.try_into().expect("one word"));
            (word(&pair[..WORD]), word(&pair[WORD..]))
        })
        .find(|&(key, _)| key == AT_CLKTCK)
        .map_or(100, |(_, v)| v as u64)
        .max(1)
}

/// Every process on the machine at one moment, with who is whose child.
#[derive(Debug, Default)]
pub struct ProcTable {
    by_pid: HashMap<u32, Stat>,
    children: HashMap<u32, Vec<u32>>,
}

impl ProcTable {
    /// Reads `/proc/*/stat`; a process that exits while the table is read is left out.
    pub fn read() -> Self {
        let mut table = ProcTable::default();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return table;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Some(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|l| parse_stat(&l))
            else {
                continue;
            };
            table.children.entry(stat.ppid).or_default().push(pid);
            table.by_pid.insert(pid, stat);
        }
        table
    }

    /// One process's line, if it runs.
    pub fn get(&self, pid: u32) -> Option<&Stat> {
        self.by_pid.get(&pid)
    }

    /// The live children of `pid`.
    pub fn children(&self, pid: u32) -> &[u32] {
        self.children.get(&pid).map_or(&[], Vec::as_slice)
    }

    /// Every live descendant of `pid` (children, their children…), leaving out those in
    /// `skip` and everything under them.
    pub fn descendants(&self, pid: u32, skip: &HashSet<u32>) -> Vec<u32> {
        let mut found = Vec::new();
        let mut next = vec![pid];
        while let Some(p) = next.pop() {
            for &c in self.children(p) {
                if !skip.contains(&c) && !found.contains(&c) {
                    found.push(c);
                    next.push(c);
                }
            }
        }
        found
    }

    /// The CPU ticks of `pid`, its live descendants not in `skip`, and the reaped children
    /// of each; `None` if `pid` does not run.
    pub fn tree_ticks(&self, pid: u32, skip: &HashSet<u32>) -> Option<u64> {
        let own = self.get(pid)?.ticks();
        Some(
            own + self
                .descendants(pid, skip)
                .iter()
                .filter_map(|d| self.get(*d))
                .map(Stat::ticks)
                .sum::<u64>(),
        )
    }
}

/// The CPU of every member and of this process at one moment.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Each member's ticks (its tree, see [`ProcTable::tree_ticks`]), by PID.
    members: HashMap<u32, (Member, u64)>,
    /// This process's own user and system ticks (the load generator's; not its children's).
    own: u64,
}

/// Samples `members` and this process. Members that no longer run are left out.
pub fn sample(members: &[Member]) -> Sample {
    let table = ProcTable::read();
    let skip: HashSet<u32> = members.iter().map(|m| m.pid).collect();
    let own = table
        .get(std::process::id())
        .map_or(0, |s| s.utime + s.stime);
    let members = members
        .iter()
        .filter_map(|m| Some((m.pid, (m.clone(), table.tree_ticks(m.pid, &skip)?))))
        .collect();
    Sample { members, own }
}

/// One role's CPU over a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleCpu {
    /// The role (`web`, `pg-primary`, `redis`…).
    pub role: String,
    /// How many of its processes were sampled.
    pub processes: usize,
    /// CPU milliseconds per request.
    pub cpu_ms_per_request: f64,
    /// Its share of the servers' CPU (0 to 1).
    pub share: f64,
}

/// The topology's CPU over a run, per request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuView {
    /// Requests the load generator sent during the run.
    pub requests: u64,
    /// CPU milliseconds per request summed over every server process.
    pub server_cpu_ms_per_request: f64,
    /// Per role, the largest first.
    pub roles: Vec<RoleCpu>,
    /// The load generator's own CPU milliseconds per request (shown apart).
    pub load_generator_cpu_ms_per_request: f64,
}

impl CpuView {
    /// What changed between two samples, for `requests` requests; `None` without requests.
    /// A member that started between them counts from zero; one that stopped between them
    /// is left out, since what it used after the first sample can no longer be read (unless
    /// another member reaped it, whose `cutime` then holds it).
    pub fn between(before: &Sample, after: &Sample, requests: u64) -> Option<Self> {
        if requests == 0 {
            return None;
        }
        let per_request = |ticks: u64| ticks as f64 * 1000.0 / (clock_ticks() * requests) as f64;
        let mut by_role: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
        for (pid, (member, ticks)) in &after.members {
            let was = before.members.get(pid).map_or(0, |(_, t)| *t);
            let e = by_role.entry(member.role.as_str()).or_default();
            e.0 += 1;
            e.1 += ticks.saturating_sub(was);
        }
        let total: u64 = by_role.values().map(|(_, t)| t).sum();
        let mut roles: Vec<RoleCpu> = by_role
            .into_iter()
            .map(|(role, (processes, ticks))| RoleCpu {
                role: role.to_string(),
                processes,
                cpu_ms_per_request: per_request(ticks),
                share: if total > 0 {
                    ticks as f64 / total as f64
                } else {
                    0.0
                },
            })
            .collect();
        roles.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.role.cmp(&b.role)));
        Some(CpuView {
            requests,
            server_cpu_ms_per_request: per_request(total),
            roles,
            load_generator_cpu_ms_per_request: per_request(after.own.saturating_sub(before.own)),
        })
    }

    /// The role named `role`, if it was sampled.
    pub fn role(&self, role: &str) -> Option<&RoleCpu> {
        self.roles.iter().find(|r| r.role == role)
    }

    /// The terminal table: the total, one line per role, and the load generator apart.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "  cpu        {:.3} ms/request across the servers; load generator {:.3} ms/request (apart)",
            self.server_cpu_ms_per_request, self.load_generator_cpu_ms_per_request
        );
        let _ = writeln!(
            t,
            "    {:<12} {:>9} {:>12} {:>8}",
            "role", "processes", "ms/request", "share"
        );
        for r in &self.roles {
            let _ = writeln!(
                t,
                "    {:<12} {:>9} {:>12.3} {:>6.1} %",
                r.role,
                r.processes,
                r.cpu_ms_per_request,
                r.share * 100.0
            );
        }
        t
    }

    /// The `n` largest roles in one line: `web 0.36 (75 %), pg-primary 0.12 (25 %)`.
    pub fn top(&self, n: usize) -> String {
        self.roles
            .iter()
            .take(n)
            .map(|r| {
                format!(
                    "{} {:.3} ({:.0} %)",
                    r.role,
                    r.cpu_ms_per_request,
                    r.share * 100.0
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    #[test]
    fn a_stat_line_parses_when_the_command_holds_spaces_and_parentheses() {
        let line = "4242 (my (odd) cmd) S 17 4242 4242 0 -1 4194560 120 0 0 0 \
                    31 7 5 3 20 0 1 0 2175583 3133440 380 18446744073709551615 0 0";
        let s = parse_stat(line).expect("a stat line");
        assert_eq!(
            s,
            Stat {
                pid: 4242,
                comm: "my (odd) cmd".into(),
                ppid: 17,
                utime: 31,
                stime: 7,
                cutime: 5,
                cstime: 3,
            }
        );
        assert_eq!(s.ticks(), 46);
        assert_eq!(parse_stat("12 (cut short) S 1 2"), None);
        assert!(clock_ticks() >= 1);
    }

    /// Spawns `sh -c script` in its own process group, with piped stdin and stdout, and
    /// reads its first line (printed once what the test needs exists).
    fn spawn(script: &str) -> (std::process::Child, String) {
        let mut child = Command::new("sh")
            .args(["-c", script])
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh runs");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("a line");
        (child, line)
    }

    fn kill_group(mut child: std::process::Child) {
        let group = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
    }

    #[test]
    fn the_children_and_grandchildren_of_a_spawned_tree_are_found() {
        // the last line runs once both background jobs have been forked
        let (child, line) = spawn(
            "sleep 30 & sh -c 'sleep 30 & echo started; wait' & \
             read _; wait",
        );
        assert_eq!(line.trim(), "started");
        let pid = child.id();
        let table = ProcTable::read();
        assert_eq!(table.children(pid).len(), 2, "{:?}", table.children(pid));
        let all = table.descendants(pid, &HashSet::new());
        assert_eq!(all.len(), 3, "{all:?}");
        let inner = *table
            .children(pid)
            .iter()
            .find(|c| !table.children(**c).is_empty())
            .expect("the inner shell");
        // a descendant that is a member of its own is left out, with what is under it
        assert_eq!(table.descendants(pid, &HashSet::from([inner])).len(), 1);
        assert!(table.tree_ticks(pid, &HashSet::new()).is_some());
        kill_group(child);
    }

    #[test]
    fn an_exited_childs_cpu_is_counted_in_its_parents_cutime() {
        // a subshell busy for a while, reaped by its parent before the parent says so
        let (child, line) =
            spawn("(i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done); echo reaped; read _");
        assert_eq!(line.trim(), "reaped");
        let table = ProcTable::read();
        let parent = table.get(child.id()).expect("the parent runs");
        assert!(table.children(child.id()).is_empty());
        assert!(parent.cutime + parent.cstime > 0, "{parent:?}");
        assert!(
            table.tree_ticks(child.id(), &HashSet::new()).unwrap() >= parent.cutime + parent.cstime
        );
        kill_group(child);
    }

    #[test]
    fn a_view_splits_the_cpu_by_role_and_keeps_the_load_generator_apart() {
        let m = |role: &str, pid| Member {
            role: role.into(),
            name: format!("{role}-{pid}"),
            pid,
        };
        let before = Sample {
            members: HashMap::from([(1, (m("web", 1), 100)), (2, (m("pg-primary", 2), 50))]),
            own: 10,
        };
        let after = Sample {
            members: HashMap::from([
                (1, (m("web", 1), 100 + 3 * clock_ticks())),
                (2, (m("pg-primary", 2), 50 + clock_ticks())),
                (3, (m("web", 3), 0)),
            ]),
            own: 10 + 2 * clock_ticks(),
        };
        let v = CpuView::between(&before, &after, 1000).expect("a view");
        assert_eq!(v.server_cpu_ms_per_request, 4.0);
        assert_eq!(v.load_generator_cpu_ms_per_request, 2.0);
        assert_eq!(v.roles[0].role, "web");
        assert_eq!(v.roles[0].processes, 2);
        assert_eq!(v.roles[0].share, 0.75);
        assert_eq!(v.role("pg-primary").unwrap().cpu_ms_per_request, 1.0);
        assert!(v.table().contains("pg-primary"), "{}", v.table());
        assert_eq!(v.top(1), "web 3.000 (75 %)");
        assert_eq!(CpuView::between(&before, &after, 0), None);
    }
}
