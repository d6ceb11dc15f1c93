//! `Settings`: one typed tree that configures every role.
//!
//! Layers, later wins: defaults in code < a TOML file (`--config FILE`) < environment
//! variables `CRESCENDO_<SECTION>__<KEY>` (e.g. `CRESCENDO_HTTP__LISTEN=0.0.0.0:80`,
//! `CRESCENDO_DATA_DIR=/srv/crescendo`) < command-line flags. Unknown keys in a file are
//! errors that name the key; environment variables that name no key are ignored, so other
//! tools' `CRESCENDO_*` variables do no harm. Values are parsed at load time (addresses,
//! enums, numbers), so a bad value fails at start-up, not at first use.

mod edge;
mod env;
mod region;
mod sections;

pub use edge::EdgeSettings;
pub use region::RegionSettings;
pub use sections::*;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A secret string: never shown by `Debug`, so settings can be logged safely.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret's text, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Every setting of every role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where `serve` keeps its database, blobs and generated keys.
    pub data_dir: PathBuf,
    /// The HTTP listener.
    pub http: Http,
    /// The database.
    pub store: StoreSettings,
    /// The read-through cache.
    pub cache: CacheSettings,
    /// The job queue.
    pub queue: QueueSettings,
    /// Uploaded files.
    pub blobs: BlobSettings,
    /// Small shared state (web sessions, rate limits).
    pub sessions: SessionSettings,
    /// Tokens and passwords.
    pub auth: Auth,
    /// The web pages.
    pub web: WebSettings,
    /// The CDN edge caches in front of the service.
    pub edge: EdgeSettings,
    /// The region this node runs in (rung 8), and its cross-region cache invalidation.
    pub region: RegionSettings,
    /// Logs.
    pub log: Log,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./crescendo-data"),
            http: Http::default(),
            store: StoreSettings::default(),
            cache: CacheSettings::default(),
            queue: QueueSettings::default(),
            blobs: BlobSettings::default(),
            sessions: SessionSettings::default(),
            auth: Auth::default(),
            web: WebSettings::default(),
            edge: EdgeSettings::default(),
            region: RegionSettings::default(),
            log: Log::default(),
        }
    }
}

/// Settings that could not be loaded; the message names the file, key and value.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl StoreSettings {
    /// `postgres_shards` as (cluster name, URL) pairs.
    ///
    /// # Errors
    /// An entry without `NAME=`, an empty or repeated name, or one not made of letters,
    /// digits, `-` and `_`.
    pub fn shard_urls(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let out = named_urls("postgres_shards", &self.postgres_shards)?;
        for (i, (name, _)) in out.iter().enumerate() {
            if name == "catalogue" {
                return Err(ConfigError(
                    "store.postgres_shards: \"catalogue\" names the catalogue database \
                     (store.postgres_url), not a cluster"
                        .into(),
                ));
            }
            if out[..i].iter().any(|(n, _)| n == name) {
                return Err(ConfigError(format!(
                    "store.postgres_shards names cluster {name} twice"
                )));
            }
        }
        Ok(out)
    }

    /// `postgres_shard_replicas` as (cluster name, URL) pairs, a name once per replica.
    ///
    /// # Errors
    /// An entry as [`StoreSettings::shard_urls`] refuses, or one naming a cluster that
    /// `postgres_shards` does not.
    pub fn shard_replica_urls(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let clusters = self.shard_urls()?;
        let out = named_urls("postgres_shard_replicas", &self.postgres_shard_replicas)?;
        if let Some((name, _)) = out
            .iter()
            .find(|(name, _)| !clusters.iter().any(|(c, _)| c == name))
        {
            return Err(ConfigError(format!(
                "store.postgres_shard_replicas: cluster {name} is not in store.postgres_shards"
            )));
        }
        Ok(out)
    }
}

/// The `NAME=URL` entries of setting `store.KEY` as pairs.
fn named_urls(key: &str, entries: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for entry in entries {
        let Some((name, url)) = entry.split_once('=') else {
            return Err(ConfigError(format!(
                "store.{key}: {entry:?} is not NAME=URL"
            )));
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError(format!(
                "store.{key}: cluster name {name:?} must be letters, digits, - and _"
            )));
        }
        out.push((name.to_string(), url.trim().to_string()));
    }
    Ok(out)
}

/// Flags given on the command line; they win over every other layer.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

impl Settings {
    /// Loads defaults < `file` < `CRESCENDO_*` environment < `overrides`.
    ///
    /// # Errors
    /// A missing or unreadable file, an unknown key in it, or a value of the wrong type.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_with_env(file, overrides, std::env::vars())
    }

    /// [`Settings::load`] with the environment given, for tests.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_with_env(
        file: Option<&Path>,
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "config file {} not found",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        let known = env::known_keys();
        // Only variables that name a key: `CRESCENDO_HTTP__LISTEN` → `http.listen`.
        let mut env_layer = std::collections::BTreeMap::new();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("CRESCENDO_") else {
                continue;
            };
            let key = rest.to_lowercase().replace("__", ".");
            if known.contains(&key) {
                env_layer.insert(key, value);
            }
        }
        for (key, value) in env_layer {
            fig = fig.merge((key.as_str(), env::parse_env_value(&value)));
        }
        if let Some(listen) = overrides.listen {
            fig = fig.merge(("http.listen", listen.to_string()));
        }
        if let Some(dir) = &overrides.data_dir {
            fig = fig.merge(("data_dir", dir.to_string_lossy().to_string()));
        }
        let s: Settings = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if let Some(secret) = &self.auth.jwt_secret
            && secret.expose().len() < 32
        {
            return Err(ConfigError(
                "auth.jwt_secret must be at least 32 characters".into(),
            ));
        }
        if self.auth.hash_concurrency == 0 {
            return Err(ConfigError(
                "auth.hash_concurrency must be at least 1".into(),
            ));
        }
        if self.sessions.backend == SessionBackend::Redis && self.sessions.redis_url.is_empty() {
            return Err(ConfigError(
                "sessions.backend = \"redis\" needs sessions.redis_url".into(),
            ));
        }
        if self.store.backend == StoreBackend::Postgres && self.store.postgres_url.is_empty() {
            return Err(ConfigError(
                "store.backend = \"postgres\" needs store.postgres_url".into(),
            ));
        }
        if !self.store.postgres_shards.is_empty() {
            self.store.shard_replica_urls()?;
        }
        if self.blobs.backend == BlobBackend::S3 && self.blobs.s3_bucket.is_empty() {
            return Err(ConfigError(
                "blobs.backend = \"s3\" needs blobs.s3_bucket".into(),
            ));
        }
        if self.blobs.backend == BlobBackend::S3
            && !self.blobs.s3_access_key.is_empty()
            && self.blobs.s3_secret_key.is_none()
        {
            return Err(ConfigError(
                "blobs.s3_access_key needs blobs.s3_secret_key".into(),
            ));
        }
        if self.http.max_page_size == 0 {
            return Err(ConfigError("http.max_page_size must be at least 1".into()));
        }
        Ok(())
    }

    /// The directory for local blobs.
    pub fn blob_dir(&self) -> PathBuf {
        if self.blobs.dir.as_os_str().is_empty() {
            self.data_dir.join("blobs")
        } else {
            self.blobs.dir.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn shard_replicas_name_configured_clusters_and_no_cluster_is_the_catalogue() {
        let mut store = StoreSettings {
            postgres_shards: vec!["c1=postgres://a/x".into(), "c2=postgres://b/x".into()],
            postgres_shard_replicas: vec!["c1=postgres://a1/x".into(), "c1=postgres://a2/x".into()],
            ..StoreSettings::default()
        };
        let replicas = store.shard_replica_urls().unwrap();
        assert_eq!(
            replicas,
            [
                ("c1".to_string(), "postgres://a1/x".to_string()),
                ("c1".to_string(), "postgres://a2/x".to_string())
            ]
        );
        store.postgres_shard_replicas = vec!["c9=postgres://z/x".into()];
        assert!(store.shard_replica_urls().is_err(), "c9 is no cluster");
        store.postgres_shard_replicas.clear();
        store.postgres_shards = vec!["catalogue=postgres://a/x".into()];
        assert!(store.shard_urls().is_err(), "the catalogue's name is taken");
    }

    #[test]
    fn replica_urls_come_from_the_environment_as_an_array() {
        let s = Settings::load_with_env(
            None,
            &Overrides::default(),
            env(&[(
                "CRESCENDO_STORE__POSTGRES_REPLICA_URLS",
                "[\"postgres://u@127.0.0.1:5433/db\", \"postgres://u@127.0.0.1:5434/db\"]",
            )]),
        )
        .unwrap();
        assert_eq!(
            s.store.postgres_replica_urls,
            [
                "postgres://u@127.0.0.1:5433/db",
                "postgres://u@127.0.0.1:5434/db"
            ]
        );
    }

    #[test]
    fn defaults_serve_on_8080_from_crescendo_data() {
        let s = Settings::load_with_env(None, &Overrides::default(), env(&[])).unwrap();
        assert_eq!(s.http.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.data_dir, PathBuf::from("./crescendo-data"));
        assert_eq!(s.blob_dir(), PathBuf::from("./crescendo-data/blobs"));
    }

    #[test]
    fn layers_apply_in_order() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "data_dir = \"/from/file\"\n[http]\nlisten = \"127.0.0.1:1\"\nbody_limit_bytes = 10\n[cache]\nttl_secs = 7").unwrap();
        let s = Settings::load_with_env(
            Some(f.path()),
            &Overrides {
                listen: Some("127.0.0.1:3".parse().unwrap()),
                data_dir: None,
            },
            env(&[
                ("CRESCENDO_HTTP__LISTEN", "127.0.0.1:2"),
                ("CRESCENDO_CACHE__TTL_SECS", "9"),
                ("CRESCENDO_UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.http.listen, "127.0.0.1:3".parse().unwrap(), "flags win");
        assert_eq!(s.cache.ttl_secs, 9, "environment beats file");
        assert_eq!(s.http.body_limit_bytes, 10, "file beats defaults");
        assert_eq!(s.data_dir, PathBuf::from("/from/file"));
    }

    #[test]
    fn unknown_keys_in_a_file_are_errors_naming_the_key() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[http]\nlisten_addr = \"127.0.0.1:1\"").unwrap();
        let e =
            Settings::load_with_env(Some(f.path()), &Overrides::default(), env(&[])).unwrap_err();
        assert!(e.to_string().contains("listen_addr"), "{e}");
    }

    #[test]
    fn bad_values_fail_at_load_naming_the_key() {
        let e = Settings::load_with_env(
            None,
            &Overrides::default(),
            env(&[("CRESCENDO_HTTP__LISTEN", "nowhere")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("listen"), "{e}");
        let e = Settings::load_with_env(
            None,
            &Overrides::default(),
            env(&[("CRESCENDO_AUTH__JWT_SECRET", "short")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("jwt_secret"), "{e}");
    }

    #[test]
    fn settings_written_as_environment_variables_load_back_the_same() {
        let mut s = Settings::default();
        s.store.backend = StoreBackend::Postgres;
        s.store.postgres_url = "postgres://u@127.0.0.1:5432/db".into();
        s.store.postgres_replica_urls = vec!["postgres://u@127.0.0.1:5433/db".into()];
        s.cache.backend = CacheBackend::None;
        s.http.drain_delay_ms = 1000;
        s.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        s.queue.workers = 0;
        s.blobs.dir = PathBuf::from("/run/blobs");
        s.blobs.s3_access_key = "12345".into();
        s.blobs.s3_secret_key = Some(Secret::new("true"));
        s.auth.jwt_secret = Some(Secret::new("0123456789abcdef0123456789abcdef"));
        let vars = s.to_env();
        assert!(vars.contains(&(
            "CRESCENDO_STORE__POSTGRES_URL".to_string(),
            "postgres://u@127.0.0.1:5432/db".to_string()
        )));
        assert!(vars.contains(&("CRESCENDO_QUEUE__WORKERS".to_string(), "0".to_string())));
        assert!(
            !vars.iter().any(|(k, _)| k == "CRESCENDO_HTTP__LISTEN"),
            "defaults are left out: {vars:?}"
        );
        let back = Settings::load_with_env(None, &Overrides::default(), vars).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let s = Settings::load_with_env(
            None,
            &Overrides::default(),
            env(&[(
                "CRESCENDO_AUTH__JWT_SECRET",
                "0123456789abcdef0123456789abcdef-top-secret",
            )]),
        )
        .unwrap();
        assert_eq!(
            s.auth.jwt_secret.as_ref().unwrap().expose(),
            "0123456789abcdef0123456789abcdef-top-secret"
        );
        assert!(!format!("{s:?}").contains("top-secret"));
    }
}
