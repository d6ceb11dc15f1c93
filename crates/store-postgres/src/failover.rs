//! Promotion of a replica when the primary is gone (`crescendo failover`).
//!
//! 1. Every configured server is asked for its role and how much WAL it has received. If
//!    a primary still answers, nothing is done: promoting a second primary would split the
//!    data in two.
//! 2. The replica that has received the most WAL is promoted (`pg_promote`, which first
//!    replays everything it received). With synchronous replication (`ANY 1 (…)`) every
//!    acknowledged commit reached at least one replica, so the most advanced one has them
//!    all: no acknowledged write is lost. With asynchronous replication the last commits
//!    may not have left the old primary; they are lost with it.
//! 3. The new primary is told which standbys are synchronous now (the others), and each
//!    other replica is re-pointed at it (`primary_conninfo`, reloaded without a restart;
//!    `recovery_target_timeline = latest` makes it follow the new timeline).
//!
//! Web nodes need no signal: their store's monitor sees the new primary at its next check.
//! The old primary must not come back as it was; rebuild it as a replica of the new one.

use std::time::{Duration, Instant};

/// What a failover did.
#[derive(Debug, Clone)]
pub struct Promoted {
    /// `host:port` of the new primary.
    pub primary: String,
    /// Its received WAL position when it was chosen.
    pub position: u64,
    /// `host:port` of each replica re-pointed at it.
    pub repointed: Vec<String>,
    /// From the first check to the new primary accepting writes.
    pub took: Duration,
}

/// Why a failover was not done.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    /// A primary answers: there is nothing to fail over from.
    #[error("{0} still answers as the primary; refusing to promote a second one")]
    PrimaryAlive(String),
    /// No replica answers.
    #[error("no replica answers; nothing can be promoted")]
    NoReplica,
    /// A server refused a step.
    #[error("{server}: {error}")]
    Step {
        /// `host:port`.
        server: String,
        /// What it said.
        error: String,
    },
}

struct Seen {
    url: String,
    name: String,
    in_recovery: bool,
    received: u64,
}

async fn connect(url: &str) -> Result<sqlx::PgConnection, sqlx::Error> {
    use sqlx::Connection;
    tokio::time::timeout(Duration::from_secs(2), sqlx::PgConnection::connect(url))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
}

async fn look(url: &str) -> Option<Seen> {
    let mut c = connect(url).await.ok()?;
    let (in_recovery, received): (bool, i64) = sqlx::query_as(
        "SELECT pg_is_in_recovery(),
                (CASE WHEN pg_is_in_recovery()
                      THEN GREATEST(COALESCE(pg_last_wal_receive_lsn(), '0/0'), COALESCE(pg_last_wal_replay_lsn(), '0/0'))
                      ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn)::bigint",
    )
    .fetch_one(&mut c)
    .await
    .ok()?;
    Some(Seen {
        url: url.to_string(),
        name: crate::cluster::url_host_port(url),
        in_recovery,
        received: received as u64,
    })
}

fn step(server: &str) -> impl Fn(sqlx::Error) -> FailoverError + '_ {
    move |e| FailoverError::Step {
        server: server.to_string(),
        error: e.to_string(),
    }
}

/// `conninfo` with its `host` and `port` replaced (other keys, such as `application_name`,
/// kept). Values may be single-quoted, as libpq writes them.
fn repoint(conninfo: &str, host: &str, port: &str) -> String {
    let mut out = Vec::new();
    let mut rest = conninfo.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('\'') {
            let end = q.find('\'').unwrap_or(q.len());
            (&q[..end], q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if key != "host" && key != "port" && key != "hostaddr" {
            out.push(format!("{key}='{}'", value.replace('\'', "\\'")));
        }
        rest = next.trim_start();
    }
    out.push(format!("host='{host}'"));
    out.push(format!("port='{port}'"));
    out.join(" ")
}

/// Promotes the most advanced replica among `urls` (the primary's and the replicas'), if no
/// primary answers. With `synchronous`, the new primary waits for one of the remaining
/// replicas on each commit, as the old one did.
///
/// # Errors
/// See [`FailoverError`].
pub async fn promote_most_advanced(
    urls: &[String],
    synchronous: bool,
) -> Result<Promoted, FailoverError> {
    let started = Instant::now();
    let mut seen = Vec::new();
    for url in urls {
        if let Some(s) = look(url).await {
            seen.push(s);
        }
    }
    if let Some(p) = seen.iter().find(|s| !s.in_recovery) {
        return Err(FailoverError::PrimaryAlive(p.name.clone()));
    }
    let best = seen
        .iter()
        .max_by_key(|s| s.received)
        .ok_or(FailoverError::NoReplica)?;
    tracing::warn!(server = %best.name, position = best.received, "promoting");

    let mut c = connect(&best.url).await.map_err(step(&best.name))?;
    let ok: bool = sqlx::query_scalar("SELECT pg_promote(true, 60)")
        .fetch_one(&mut c)
        .await
        .map_err(step(&best.name))?;
    if !ok {
        return Err(FailoverError::Step {
            server: best.name.clone(),
            error: "pg_promote did not finish in 60 s".into(),
        });
    }
    let took = started.elapsed();

    let (host, port) = best.name.rsplit_once(':').unwrap_or((&best.name, "5432"));
    let mut standby_names = Vec::new();
    let mut repointed = Vec::new();
    for other in seen.iter().filter(|s| s.url != best.url) {
        let mut r = connect(&other.url).await.map_err(step(&other.name))?;
        let conninfo: String = sqlx::query_scalar("SHOW primary_conninfo")
            .fetch_one(&mut r)
            .await
            .map_err(step(&other.name))?;
        if let Some(app) = conninfo
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("application_name="))
        {
            standby_names.push(app.trim_matches('\'').to_string());
        }
        let new = repoint(&conninfo, host, port);
        // ALTER SYSTEM takes no parameters: the value is quoted here
        let sql = format!(
            "ALTER SYSTEM SET primary_conninfo = '{}'",
            new.replace('\'', "''")
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut r)
            .await
            .map_err(step(&other.name))?;
        sqlx::query("SELECT pg_reload_conf()")
            .execute(&mut r)
            .await
            .map_err(step(&other.name))?;
        repointed.push(other.name.clone());
    }
    if synchronous && !standby_names.is_empty() {
        let names = standby_names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 ({})'",
            names.replace('\'', "''")
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .map_err(step(&best.name))?;
        sqlx::query("SELECT pg_reload_conf()")
            .execute(&mut c)
            .await
            .map_err(step(&best.name))?;
    }
    tracing::warn!(server = %best.name, ?repointed, took_ms = took.as_millis() as u64, "promoted");
    Ok(Promoted {
        primary: best.name.clone(),
        position: best.received,
        repointed,
        took,
    })
}

#[cfg(test)]
mod tests {
    use super::repoint;

    #[test]
    fn repointing_keeps_the_other_keys() {
        let c = "user=postgres passfile='/var/lib/postgresql/.pgpass' host=127.0.0.1 port=5432 application_name=r2";
        let n = repoint(c, "127.0.0.1", "6000");
        assert!(n.contains("application_name='r2'"), "{n}");
        assert!(n.contains("passfile='/var/lib/postgresql/.pgpass'"), "{n}");
        assert!(n.ends_with("host='127.0.0.1' port='6000'"), "{n}");
        assert!(!n.contains("5432"), "{n}");
    }
}
