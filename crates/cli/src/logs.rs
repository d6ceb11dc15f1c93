//! Where a process logs ([`init`]), and `crescendo logs`: a topology's logs merged in time
//! order (see `crescendo_topology::logs`).

use clap::Args;
use crescendo_topology::logs::{self, LogFilter};
use std::io::Write;
use std::path::PathBuf;

/// Sets up logging as `log` says: to standard error, or to `log.file` rotated by size.
///
/// # Errors
/// The log file cannot be opened.
pub fn init(log: &crescendo_config::Log) -> anyhow::Result<()> {
    use anyhow::Context;
    let file = log.file();
    crescendo_telemetry::init_logs_to(log.format, &log.filter, file.as_ref()).with_context(|| {
        format!(
            "opening the log file {}",
            log.file.clone().unwrap_or_default().display()
        )
    })
}

/// [`init`] with the `log` settings of the environment (`CRESCENDO_LOG__*`), for the helper
/// processes `up` starts without a settings file (the autoscaler).
///
/// # Errors
/// A `CRESCENDO_*` variable holds a bad value, or the log file cannot be opened.
pub fn init_from_env() -> anyhow::Result<()> {
    let settings = crescendo_config::Settings::load(None, &Default::default())?;
    init(&settings.log)
}

/// Flags of `logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Only processes of this role, as `status --json` names them (web, worker, lb,
    /// pg-primary, redis, nats, prometheus…); repeat it for more.
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
    /// Only the process of this name (web-1, pg-primary, haproxy…); repeat it for more.
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// Keep printing lines as they are written (through rotations, and from nodes that
    /// join), until interrupted.
    #[arg(long)]
    follow: bool,
    /// Only lines written in this last stretch of time, e.g. 10m, 30s.
    #[arg(long, value_name = "DURATION", value_parser = crescendo_bench::parse_duration)]
    since: Option<std::time::Duration>,
    /// One JSON object per line: a JSON line's own members, or `timestamp` and `message`
    /// for another server's line, with `process` and `role` added.
    #[arg(long)]
    json: bool,
    /// The run directory of the topology.
    #[arg(long, default_value = "crescendo-run", value_name = "DIR")]
    run_dir: PathBuf,
}

impl LogsArgs {
    /// Prints the logs; with `--follow`, until the process is interrupted or its output
    /// closed.
    ///
    /// # Errors
    /// An unknown role, or no log is found.
    pub fn run(self) -> anyhow::Result<()> {
        let roles = self
            .roles
            .iter()
            .map(|r| {
                serde_json::from_value(serde_json::Value::String(r.clone())).map_err(|_| {
                    anyhow::anyhow!("{r}: no such role (see `crescendo status --json`)")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let since = self.since.map(|d| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            now.saturating_sub(d).as_nanos() as i128
        });
        let filter = LogFilter {
            roles,
            names: self.names,
            since,
        };
        let stdout = std::io::stdout();
        let shown = logs::show(&self.run_dir, &filter, self.follow, |e| {
            let line = if self.json {
                logs::json(e)
            } else {
                logs::human(e)
            };
            writeln!(stdout.lock(), "{line}")
        });
        match shown {
            // the reader went away (`| head`): nothing is wrong
            Err(e)
                if e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
            {
                Ok(())
            }
            other => other,
        }
    }
}
