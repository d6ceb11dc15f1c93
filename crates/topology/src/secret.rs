//! Secrets: the credentials each server is started with, generated per run, and the files
//! that hold them, created owner-only (mode 0600) from the start, never written and then
//! restricted.
//!
//! The settings a topology's `crescendo` processes need to reach their servers carry those
//! credentials (URLs with passwords, the token key, the S3 secret key). [`seal_node_secrets`]
//! takes them out of the nodes' settings into `RUN_DIR/node-secrets.toml`, a settings file
//! each node is started with (`--config`), so that `state.json` and the nodes' environments
//! hold none of them.

use anyhow::Context;
use crescendo_config::Settings;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The settings file, in the run directory, that holds the nodes' secrets.
pub const NODE_SECRETS: &str = "node-secrets.toml";

/// `len` random characters from `A-Z`, `a-z` and `0-9` (safe in URLs and config files).
pub fn generate(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("the OS gives random bytes");
    // 62 does not divide 256: a slight bias, immaterial at these lengths
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Writes `contents` to `path` as a file only its owner can read (0600): a new file is
/// created with that mode, written and flushed to disk, then renamed over `path`, so no
/// reader ever sees the secret under a wider mode or half written.
///
/// # Errors
/// The directory cannot be written.
pub fn write_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().context("a secret file needs a name")?;
    let tmp = path.with_file_name(format!(".{}.new", name.to_string_lossy()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Adds `section.key = value` to `table` (a settings file being made).
pub(crate) fn put(
    table: &mut toml::Table,
    section: &str,
    key: &str,
    value: impl serde::Serialize,
) -> anyhow::Result<()> {
    let value = toml::Value::try_from(value)?;
    table
        .entry(section)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .context("a settings section")?
        .insert(key.into(), value);
    Ok(())
}

/// Takes every setting that carries a secret out of `node` (leaving its default) and returns
/// them as a settings file: the token key, the edges' purge token, the S3 secret key, and the URLs of PostgreSQL,
/// Redis and NATS, which carry passwords.
///
/// # Errors
/// A value cannot be written as TOML.
pub fn take_secrets(node: &mut Settings) -> anyhow::Result<String> {
    let mut t = toml::Table::new();
    if let Some(s) = node.auth.jwt_secret.take() {
        put(&mut t, "auth", "jwt_secret", s.expose())?;
    }
    if let Some(s) = node.edge.purge_token.take() {
        put(&mut t, "edge", "purge_token", s.expose())?;
    }
    if let Some(s) = node.blobs.s3_secret_key.take() {
        put(&mut t, "blobs", "s3_secret_key", s.expose())?;
    }
    let store = &mut node.store;
    if !store.postgres_url.is_empty() {
        put(
            &mut t,
            "store",
            "postgres_url",
            std::mem::take(&mut store.postgres_url),
        )?;
    }
    if !store.postgres_replica_urls.is_empty() {
        let urls = std::mem::take(&mut store.postgres_replica_urls);
        put(&mut t, "store", "postgres_replica_urls", urls)?;
    }
    if !store.postgres_shards.is_empty() {
        let urls = std::mem::take(&mut store.postgres_shards);
        put(&mut t, "store", "postgres_shards", urls)?;
    }
    if !store.postgres_shard_replicas.is_empty() {
        let urls = std::mem::take(&mut store.postgres_shard_replicas);
        put(&mut t, "store", "postgres_shard_replicas", urls)?;
    }
    if !node.cache.redis_urls.is_empty() {
        let urls = std::mem::take(&mut node.cache.redis_urls);
        put(&mut t, "cache", "redis_urls", urls)?;
    }
    if !node.sessions.redis_url.is_empty() {
        let url = std::mem::take(&mut node.sessions.redis_url);
        put(&mut t, "sessions", "redis_url", url)?;
    }
    if !node.queue.nats_url.is_empty() {
        let url = std::mem::take(&mut node.queue.nats_url);
        put(&mut t, "queue", "nats_url", url)?;
    }
    Ok(toml::to_string(&t)?)
}

/// Moves the secrets out of the nodes' settings into `RUN_DIR/`[`NODE_SECRETS`] (0600),
/// which every node is then started with; what stays in `up.node` (and so in `state.json`
/// and the nodes' environments) holds none.
pub(crate) fn seal_node_secrets(up: &mut crate::up::Up) -> anyhow::Result<()> {
    let text = take_secrets(&mut up.node)?;
    write_file(&up.o.run_dir.join(NODE_SECRETS), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crescendo_config::{Overrides, Secret};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_secret_file_is_owner_only_even_over_a_wider_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_file(&path, b"new").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
    }

    #[test]
    fn settings_split_into_secrets_and_an_environment_load_back_whole() {
        let mut node = Settings::default();
        node.auth.jwt_secret = Some(Secret::new("k".repeat(40)));
        node.blobs.s3_secret_key = Some(Secret::new("S3SECRET"));
        node.store.backend = crescendo_config::StoreBackend::Postgres;
        node.store.postgres_url = "postgres://crescendo:PGPASS@127.0.0.1:5/postgres".into();
        node.store.postgres_replica_urls = vec!["postgres://crescendo:PGPASS@127.0.0.1:6/x".into()];
        node.cache.redis_urls = vec!["redis://crescendo:RPASS@127.0.3.1:7".into()];
        node.sessions.redis_url = "redis://crescendo:SPASS@127.0.2.1:8".into();
        node.queue.nats_url = "nats://crescendo:NPASS@127.0.4.1:9".into();
        let whole = node.clone();
        let text = take_secrets(&mut node).unwrap();
        let env = node.to_env();
        let shown = format!("{env:?}");
        for secret in ["kkkk", "S3SECRET", "PGPASS", "RPASS", "SPASS", "NPASS"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
            assert!(text.contains(secret), "{secret} not in {text}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(NODE_SECRETS);
        write_file(&file, text.as_bytes()).unwrap();
        let back = Settings::load_with_env(Some(&file), &Overrides::default(), env).unwrap();
        assert_eq!(back, whole);
    }
}
