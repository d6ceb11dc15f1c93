//! `crescendo witness` and `crescendo region-watch`: the automatic region failover of rung 8
//! (`[regions] auto_failover`), see `crescendo_topology::regions::witness` and `::watch`.
//! Both are started by `up`, each inside its network namespace.

use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Flags of `witness`.
#[derive(Args, Debug)]
pub struct WitnessArgs {
    /// Where to answer (the dns namespace's private address; port 0 picks one).
    #[arg(long)]
    listen: SocketAddr,
    /// Region A's primary, which it checks.
    #[arg(long)]
    primary: SocketAddr,
    /// The file holding the token its askers must send.
    #[arg(long)]
    token_file: PathBuf,
}

impl WitnessArgs {
    /// Serves until the process is stopped.
    ///
    /// # Errors
    /// Run from the machine's own namespace, the token file cannot be read, or the address
    /// cannot be bound.
    pub fn run(self) -> anyhow::Result<()> {
        crate::logs::init_from_env()?;
        crescendo_topology::netns::refuse_from_root(self.primary.ip())?;
        let token = std::fs::read_to_string(&self.token_file)?;
        anyhow::ensure!(
            token.trim().len() >= 32,
            "{}: the token is too short",
            self.token_file.display()
        );
        let listener = std::net::TcpListener::bind(self.listen)?;
        println!("listening on http://{}", listener.local_addr()?);
        crescendo_topology::regions::witness::serve(listener, token.trim(), self.primary);
        Ok(())
    }
}

/// Flags of `region-watch`.
#[derive(Args, Debug)]
pub struct RegionWatchArgs {
    /// The region's run directory (its plan, its admin settings, the decision file).
    #[arg(long, value_name = "DIR")]
    run_dir: PathBuf,
}

impl RegionWatchArgs {
    /// Watches until SIGTERM; promotes the region's replica as
    /// `crescendo_topology::regions::watch` decides, with the region's admin settings
    /// (`RUN_DIR/postgres-admin.toml`), leaving the new primary asynchronous.
    ///
    /// # Errors
    /// The region's plan names no witness, or its settings cannot be read.
    pub async fn run(self) -> anyhow::Result<()> {
        crate::logs::init_from_env()?;
        let admin = self.run_dir.join(crescendo_topology::pg::ADMIN_FILE);
        let settings = crescendo_config::Settings::load(Some(&admin), &Default::default())?;
        let promote = || async {
            let p = crescendo_server::ops::failover(&settings, None, true).await?;
            Ok(format!(
                "promoted {} (WAL position {}) in {} ms",
                p.primary,
                p.position,
                p.took.as_millis()
            ))
        };
        crescendo_topology::regions::watch::watch(
            &self.run_dir,
            promote,
            crescendo_server::shutdown_signal(),
        )
        .await
    }
}
