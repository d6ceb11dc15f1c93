//! `crescendo nats-exporter`: NATS's monitor figures as Prometheus text (see
//! `crescendo_topology::nats_metrics`), started by `up` for each NATS server; and `crescendo
//! alert-sink`, the webhook Alertmanager sends alerts to (`crescendo_topology::alert_sink`);
//! and `crescendo dashboard` (`crescendo_topology::dashboard`).

use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Flags of `nats-exporter`.
#[derive(Args, Debug)]
pub struct NatsExporterArgs {
    /// NATS's monitor address (its `-m` port).
    #[arg(long)]
    monitor: SocketAddr,
    /// Where to serve `/metrics`.
    #[arg(long)]
    listen: SocketAddr,
    /// The file holding the scraper's password (user `crescendo`).
    #[arg(long)]
    password_file: PathBuf,
}

impl NatsExporterArgs {
    /// Serves until the process is stopped.
    ///
    /// # Errors
    /// The password file cannot be read, or the address cannot be bound.
    pub fn run(self) -> anyhow::Result<()> {
        crate::logs::init_from_env()?;
        let password = std::fs::read_to_string(&self.password_file)?;
        let listener = std::net::TcpListener::bind(self.listen)?;
        println!("listening on http://{}", listener.local_addr()?);
        crescendo_topology::nats_metrics::serve(listener, self.monitor, password.trim());
        Ok(())
    }
}

/// Flags of `alert-sink`.
#[derive(Args, Debug)]
pub struct AlertSinkArgs {
    /// Where to serve `/alerts`.
    #[arg(long)]
    listen: SocketAddr,
    /// The file holding Alertmanager's password (user `crescendo`).
    #[arg(long)]
    password_file: PathBuf,
    /// Where to keep the firing alerts (rewritten on each change, 0600).
    #[arg(long)]
    alerts_file: PathBuf,
}

impl AlertSinkArgs {
    /// Serves until the process is stopped.
    ///
    /// # Errors
    /// The password file cannot be read, the address cannot be bound, or the alerts file
    /// cannot be written.
    pub fn run(self) -> anyhow::Result<()> {
        crate::logs::init_from_env()?;
        let password = std::fs::read_to_string(&self.password_file)?;
        let listener = std::net::TcpListener::bind(self.listen)?;
        println!("listening on http://{}", listener.local_addr()?);
        crescendo_topology::alert_sink::serve(listener, password.trim(), self.alerts_file)
    }
}

/// Flags of `dashboard`.
#[derive(Args, Debug)]
pub struct DashboardArgs {
    /// The run directory of the topology.
    #[arg(long, default_value = "crescendo-run", value_name = "DIR")]
    run_dir: PathBuf,
    /// Serve the dashboard on ADDR (as `up` starts it) instead of printing its URL.
    #[arg(long, value_name = "ADDR", requires = "prometheus")]
    serve: Option<SocketAddr>,
    /// With --serve: the topology's Prometheus.
    #[arg(long, value_name = "ADDR")]
    prometheus: Option<String>,
}

impl DashboardArgs {
    /// Prints the URL of the topology's dashboard, or serves it until the process is stopped.
    ///
    /// # Errors
    /// No dashboard runs from the run directory; or, serving, its password file cannot be
    /// read or the address cannot be bound.
    pub fn run(self) -> anyhow::Result<()> {
        use crescendo_topology::dashboard;
        let Some(addr) = self.serve else {
            let (url, password_file) = dashboard::url(&self.run_dir)?;
            println!(
                "dashboard: {url} (user {}, password in {})",
                crescendo_topology::prometheus::USER,
                password_file.display()
            );
            return Ok(());
        };
        let file = dashboard::dir(&self.run_dir).join(dashboard::PASSWORD_FILE);
        let password = std::fs::read_to_string(&file)?;
        let listener = std::net::TcpListener::bind(addr)?;
        println!("listening on http://{}", listener.local_addr()?);
        let prometheus = self.prometheus.unwrap_or_default();
        dashboard::serve(listener, password.trim(), self.run_dir, prometheus);
        Ok(())
    }
}
