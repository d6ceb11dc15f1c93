//! TLS at the border (rung 6): a certificate authority made for the run, a certificate for
//! the edges' addresses that it signs, and hitch (Debian's `hitch`) terminating HTTPS in
//! front of each edge.
//!
//! The authority's private key lives only in memory while `up` signs the edges'
//! certificate, so nothing else can ever be signed with it; its certificate is written to
//! `RUN_DIR/ca.pem` for clients to trust. The edges' key and certificate chain are one
//! owner-only file that hitch reads before it drops to its own user. Hitch hands each
//! connection to its edge's PROXY listener, so the edge knows the client's address and that
//! the request came over TLS.

use anyhow::{Context, bail};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The authority's certificate, in the run directory.
pub const CA_FILE: &str = "ca.pem";

/// A certificate for `ips` and `localhost`, signed by a certificate authority made for it
/// alone: (the authority's certificate, the certificate's key and chain), both PEM.
///
/// # Errors
/// A key cannot be generated or a certificate signed.
pub fn certificates(ips: &[IpAddr]) -> anyhow::Result<(String, String)> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose, SanType,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "Crescendo run authority");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca = ca.self_signed(&ca_key)?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()])?;
    leaf.distinguished_name = rcgen::DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, "Crescendo edge");
    leaf.subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let leaf = leaf.signed_by(&key, &ca, &ca_key)?;
    Ok((
        ca.pem(),
        format!("{}{}{}", key.serialize_pem(), leaf.pem(), ca.pem()),
    ))
}

fn binary() -> anyhow::Result<&'static str> {
    const BIN: &str = "/usr/sbin/hitch";
    if Path::new(BIN).is_file() {
        Ok(BIN)
    } else {
        bail!("hitch is missing: install the Debian package hitch (apt-get install hitch)")
    }
}

/// A running hitch in front of one edge; stopped (SIGTERM) when dropped unless detached.
pub struct Hitch {
    server: crate::Server,
}

impl Hitch {
    /// Starts hitch on `public` (HTTPS) with the key and chain in `pem`, handing connections
    /// to `backend` with a PROXY v2 header, and waits until it accepts connections.
    ///
    /// # Errors
    /// The binary is missing, or it does not listen within 10 s.
    pub fn start(
        dir: &Path,
        pem: &Path,
        public: SocketAddr,
        backend: SocketAddr,
    ) -> anyhow::Result<Self> {
        let bin = binary()?;
        std::fs::create_dir_all(dir)?;
        let log_path = dir.join("hitch.log");
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--frontend=[{}]:{}", public.ip(), public.port()))
            .arg(format!("--backend=[{}]:{}", backend.ip(), backend.port()))
            .args(["--write-proxy-v2=on", "--workers=1", "--daemon=off"])
            .arg(format!("--ocsp-dir={}", dir.display()));
        if nix::unistd::geteuid().is_root() {
            // it reads the key as root, binds, then runs as its own user
            cmd.args(["--user=_hitch", "--group=_hitch"]);
        }
        let child = cmd
            .arg(pem)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting hitch")?;
        let child = crate::await_ready(
            child,
            &format!("hitch on {public}"),
            &log_path,
            Duration::from_secs(10),
            || std::net::TcpStream::connect(public).is_ok(),
        )?;
        Ok(Hitch {
            server: crate::Server::new(child, Duration::from_secs(5)),
        })
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }
}

impl crate::launch::Launched for Hitch {
    fn server(&mut self) -> &mut crate::Server {
        &mut self.server
    }
}

/// Writes the run's authority (`RUN_DIR/ca.pem`) and the edges' key and chain
/// (`RUN_DIR/edge-tls.pem`, owner-only) for `ips`; returns the latter's path.
pub(crate) fn write_certificates(run_dir: &Path, ips: &[IpAddr]) -> anyhow::Result<PathBuf> {
    let (ca, chain) = certificates(ips)?;
    std::fs::write(run_dir.join(CA_FILE), ca)?;
    let pem = run_dir.join("edge-tls.pem");
    crate::secret::write_file(&pem, chain.as_bytes())?;
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_edge_certificate_names_its_addresses_and_comes_with_its_key_and_authority() {
        let ip: IpAddr = "127.0.8.1".parse().unwrap();
        let (ca, chain) = certificates(&[ip]).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(chain.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(chain.matches("-----BEGIN CERTIFICATE-----").count(), 2);
        assert!(chain.ends_with(&ca), "the chain ends with the authority");
        // a second run's authority is another one
        assert_ne!(certificates(&[ip]).unwrap().0, ca);
    }
}
