//! Starting and recording the processes of a topology: [`Running`] holds what `up` started
//! and stops it in [`Role::STOP_ORDER`] when dropped (unless detached), [`Part`] is what each
//! tier's launcher gives it to stop or leave running, and [`start_node`] is the one way a
//! `crescendo` process (web node or worker) is started and awaited.

use crate::state::{Process, Role, State, signal};
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server `up` started, as its tier hands it to [`Running`]: dropped, it stops (each
/// launcher stops its server on drop); detached, it runs on after this process.
pub(crate) trait Part: Send {
    /// Asks it to stop without waiting (a `crescendo` process drains on SIGTERM), so a whole
    /// tier drains at once before each is waited for.
    fn begin_stop(&mut self) {}
    /// Leaves it running; `crescendo down` stops it by PID.
    fn detach(self: Box<Self>);
}

/// A launcher whose server is held by a [`crate::Server`]: detaching it is detaching that.
pub(crate) trait Launched: Send {
    /// The server it holds.
    fn server(&mut self) -> &mut crate::Server;
}

impl<T: Launched> Part for T {
    fn detach(mut self: Box<Self>) {
        self.server().detach();
    }
}

/// A `crescendo` process (web node, worker, autoscaler) this process started.
pub(crate) struct Node {
    child: Child,
    /// How long it may take to drain once asked: workers finish the jobs in hand.
    drain: Duration,
}

impl Node {
    /// Wraps a started child that may take `drain` to stop.
    pub(crate) fn new(child: Child, drain: Duration) -> Self {
        Self { child, drain }
    }
}

impl Part for Node {
    fn begin_stop(&mut self) {
        signal(self.child.id(), nix::sys::signal::Signal::SIGTERM);
    }
    fn detach(self: Box<Self>) {
        std::mem::forget(*self);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        crate::stop(&mut self.child, None, self.drain);
    }
}

/// A running topology started by this process; stopped when dropped unless detached.
pub struct Running {
    /// What was started.
    pub state: State,
    pub(crate) run_dir: PathBuf,
    parts: Vec<(Role, Box<dyn Part>)>,
}

impl Running {
    /// Nothing started yet, for `state` in `run_dir`.
    pub(crate) fn new(state: State, run_dir: PathBuf) -> Self {
        Self {
            state,
            run_dir,
            parts: Vec::new(),
        }
    }

    /// Records a started process in the state, and keeps `part` to stop it.
    pub(crate) fn record(&mut self, process: Process, part: Box<dyn Part>) {
        self.parts.push((process.role, part));
        self.state.processes.push(process);
    }

    /// Keeps `part` to stop with the `role`'s tier, with no process of its own in the state.
    pub(crate) fn keep(&mut self, role: Role, part: Box<dyn Part>) {
        self.parts.push((role, part));
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Leaves everything running after this process exits; `crescendo down` stops it.
    pub fn detach(mut self) {
        for (_, part) in std::mem::take(&mut self.parts) {
            part.detach();
        }
        // the state file stays: `down` and `status` read it
        std::mem::forget(self);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut parts = std::mem::take(&mut self.parts);
        for role in Role::STOP_ORDER {
            let (mut tier, rest): (Vec<_>, Vec<_>) =
                parts.into_iter().partition(|(r, _)| *r == role);
            parts = rest;
            for (_, part) in &mut tier {
                part.begin_stop();
            }
            // dropping each waits for it to stop
            drop(tier);
        }
        let _ = std::fs::remove_file(self.run_dir.join("state.json"));
    }
}

/// How `up` starts things.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// The `crescendo` binary (web nodes run `EXE web`).
    pub exe: PathBuf,
    /// Where state, configuration and logs go.
    pub run_dir: PathBuf,
    /// Overrides the topology's public address.
    pub public: Option<SocketAddr>,
    /// Called with a line of progress for each step.
    pub progress: fn(&str),
    /// The region this `up` starts, inside the region's network namespace, when it is one
    /// of a two-region topology (rung 8; `crate::regions` starts it with this).
    pub region: Option<crate::regions::RegionPlan>,
}

/// A free port on `ip`.
pub(crate) fn free_port(ip: [u8; 4]) -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind(SocketAddr::from((ip, 0)))?
        .local_addr()?
        .port())
}

/// A free address on `ip`.
pub(crate) fn free_addr(ip: [u8; 4]) -> anyhow::Result<SocketAddr> {
    Ok(SocketAddr::from((ip, free_port(ip)?)))
}

/// The last lines of a log, for errors.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The last lines a `crescendo` process wrote: its standard output and error, then its log.
fn tails(out: &Path, log: &Path) -> String {
    format!("{}\n{}", tail(out), tail(log))
}

/// Points a `crescendo` process `up` starts, named `name`, at its own log: JSON lines in
/// `RUN_DIR/NAME.log`, which it rotates by size (`log.max_bytes`, `log.keep`, from the
/// environment `up` runs in), and its standard output and error (start-up lines, a panic)
/// in `RUN_DIR/NAME.stdout.log`. Returns the two paths.
pub(crate) fn own_log(
    cmd: &mut Command,
    run_dir: &Path,
    name: &str,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let log = run_dir.join(format!("{name}.log"));
    let out_path = crate::logs::stdout_log(run_dir, name);
    let out = std::fs::File::create(&out_path)?;
    cmd.env("CRESCENDO_LOG__FILE", &log)
        .env("CRESCENDO_LOG__FORMAT", "json")
        .stdout(out.try_clone()?)
        .stderr(out);
    Ok((log, out_path))
}

/// A `crescendo` process to start: `EXE ROLE --listen ADDR --data-dir RUN_DIR/NAME --config
/// RUN_DIR/node-secrets.toml` with the environment `env`, logging as [`own_log`] says.
pub(crate) struct NodeSpec<'a> {
    /// The binary.
    pub exe: &'a Path,
    /// The run directory.
    pub run_dir: &'a Path,
    /// What it runs: `web`, `worker` or `invalidator`.
    pub role: Role,
    /// Its number: `web-N`.
    pub n: usize,
    /// Where it listens (port 0: any).
    pub addr: SocketAddr,
    /// Its settings, as `CRESCENDO_*` variables.
    pub env: &'a [(String, String)],
}

/// Starts a `crescendo` process, waits for its "listening on" line (and a web node's
/// "ops listening on" line, printed before it) on its standard output, and returns it with
/// the process record for the state (the caller records it).
///
/// # Errors
/// It cannot start, exits, or does not listen within 60 s (then it is killed); the error
/// holds the last lines of its output and log.
pub(crate) fn start_node(spec: &NodeSpec<'_>) -> anyhow::Result<(Child, Process)> {
    use std::os::unix::process::CommandExt;
    let command = match spec.role {
        Role::Web => "web",
        Role::Worker => "worker",
        Role::Invalidator => "invalidator",
        other => bail!("{other:?} is not a crescendo node"),
    };
    let name = format!("{command}-{}", spec.n);
    let data = spec.run_dir.join(&name);
    std::fs::create_dir_all(&data)?;
    let mut cmd = Command::new(spec.exe);
    cmd.arg(command)
        .arg("--listen")
        .arg(spec.addr.to_string())
        .arg("--data-dir")
        .arg(&data)
        .arg("--config")
        .arg(spec.run_dir.join(crate::secret::NODE_SECRETS))
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let (log_path, out_path) = own_log(&mut cmd, spec.run_dir, &name)?;
    let mut child = cmd
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", spec.exe.display()))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{name} exited ({status}):\n{}", tails(&out_path, &log_path));
        }
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        let line = |prefix: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|a| a.trim().parse::<SocketAddr>().ok())
        };
        let ops = line("ops listening on http://");
        if let Some(addr) = line("listening on http://")
            && (ops.is_some() || spec.role != Role::Web)
        {
            let mut process = Process::new(spec.role, name, child.id(), addr, log_path);
            process.ops_addr = ops.map(|a| a.to_string());
            return Ok((child, process));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{name} did not listen within 60 s:\n{}",
                tails(&out_path, &log_path)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The shared token key of a run directory, made on first use.
pub(crate) fn shared_secret(run_dir: &Path) -> anyhow::Result<String> {
    let path = run_dir.join("jwt.secret");
    if let Ok(s) = std::fs::read_to_string(&path)
        && s.trim().len() >= 32
    {
        return Ok(s.trim().to_string());
    }
    let key = crate::secret::generate(64);
    crate::secret::write_file(&path, key.as_bytes())?;
    Ok(key)
}
