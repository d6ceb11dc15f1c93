//! `crescendo kube TOPOLOGY`: the topology's Kubernetes manifests, written to a directory.

use clap::Args;
use std::path::PathBuf;

/// `crescendo kube`'s flags.
#[derive(Args, Debug)]
pub struct KubeArgs {
    /// The topology file (`topologies/*.toml`).
    topology: PathBuf,
    /// Where the manifests go (made if missing; files of the same names are replaced).
    #[arg(long, default_value = "crescendo-kube")]
    out: PathBuf,
    /// The Crescendo image the web nodes and workers run. [default: crescendo:VERSION]
    #[arg(long)]
    image: Option<String>,
    /// The namespace every object goes to.
    #[arg(long, default_value = "crescendo")]
    namespace: String,
    /// The public host name the Ingress serves (and its TLS certificate names).
    #[arg(long, default_value = "crescendo.example.com")]
    host: String,
}

impl KubeArgs {
    /// Renders and writes the manifests; prints where they went.
    pub fn run(self) -> anyhow::Result<()> {
        let t = crescendo_topology::Topology::load(&self.topology)?;
        let mut o = crescendo_kube::Options {
            namespace: self.namespace,
            host: self.host,
            ..Default::default()
        };
        if let Some(image) = self.image {
            o.image = image;
        }
        let m = crescendo_kube::render(&t, &o)?;
        m.write(&self.out)?;
        println!(
            "wrote {} objects to {}; create the Secrets {} lists, then `kubectl apply -k {}`",
            m.objects().count(),
            self.out.display(),
            self.out.join("NOTES.txt").display(),
            self.out.display()
        );
        Ok(())
    }
}
