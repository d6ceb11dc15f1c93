//! Promotion of a replica when the primary is gone (`crescendo failover`).
//!
//! 1. Every configured server is asked for its role and how much WAL it has received. If
//!    a primary still answers, nothing is done: promoting a second primary would split the
//!    data in two.
//! 2. The replica that has received the most WAL is chosen. With synchronous replication
//!    (`ANY 1 (…)`) every acknowledged commit reached at least one replica, so the most
//!    advanced one has them all: no acknowledged write is lost. With asynchronous
//!    replication the last commits may not have left the old primary; they are lost with it.
//! 3. Before anything changes, each other replica is asked for its `primary_conninfo` (its
//!    `application_name` is its standby name). With synchronous replication the chosen
//!    replica is then told, while still a standby, which standbys are synchronous (the
//!    others; a standby accepts `ALTER SYSTEM` and a reload), and the reload is confirmed.
//!    So the moment it becomes primary its commits already wait for a standby: there is no
//!    window in which a write is acknowledged with a single copy.
//! 4. It is promoted (`pg_promote`, which first replays everything it received).
//! 5. Each other replica is re-pointed at it (`primary_conninfo`, reloaded without a
//!    restart; `recovery_target_timeline = latest` makes it follow the new timeline).
//!
//! A failed step stops with a [`FailoverError`] that says what state it left: before the
//! promotion nothing has changed (there is no primary; run it again once the cause is
//! fixed); after it, the new primary is up and, with synchronous replication, its commits
//! wait until a re-pointed standby streams from it — safe, and the error names the replicas
//! still to re-point.
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

/// Why a failover was not done, or not finished; each says what state it left.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    /// A primary answers: there is nothing to fail over from.
    #[error("{0} still answers as the primary; refusing to promote a second one")]
    PrimaryAlive(String),
    /// No replica answers.
    #[error("no replica answers; nothing can be promoted")]
    NoReplica,
    /// A step before the promotion failed: nothing was promoted.
    #[error(
        "{server}: {error}; nothing was promoted and the cluster has no primary: fix this and \
         run the failover again"
    )]
    NotPromoted {
        /// `host:port`.
        server: String,
        /// What it said.
        error: String,
    },
    /// The chosen replica did not confirm its promotion.
    #[error(
        "promoting {server} failed: {error}; if it now answers as a primary, its commits \
         already wait for a synchronous standby (when replication is synchronous), so re-point \
         the other replicas at it; if it is still a replica, run the failover again"
    )]
    Promotion {
        /// `host:port`.
        server: String,
        /// What it said.
        error: String,
    },
    /// The new primary is up, but some replicas could not be re-pointed at it.
    #[error(
        "{primary} is the new primary, but re-pointing {} failed; with synchronous replication \
         its commits wait until one of them streams from it: set their primary_conninfo to \
         {primary} and reload them",
        failed.iter().map(|(s, e)| format!("{s} ({e})")).collect::<Vec<_>>().join(", ")
    )]
    Repoint {
        /// `host:port` of the new primary.
        primary: String,
        /// `host:port` of each replica not re-pointed, with what it said.
        failed: Vec<(String, String)>,
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

fn not_promoted(server: &str) -> impl Fn(sqlx::Error) -> FailoverError + '_ {
    move |e| FailoverError::NotPromoted {
        server: server.to_string(),
        error: e.to_string(),
    }
}

/// Runs `ALTER SYSTEM SET name = 'value'` (which takes no parameters: the value is quoted
/// here) and reloads the configuration.
async fn alter_system(
    c: &mut sqlx::PgConnection,
    name: &str,
    value: &str,
) -> Result<(), sqlx::Error> {
    let sql = format!("ALTER SYSTEM SET {name} = '{}'", value.replace('\'', "''"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *c)
        .await?;
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Each other replica's `primary_conninfo`, read before anything changes.
async fn read_conninfos<'a>(others: &[&'a Seen]) -> Result<Vec<(&'a Seen, String)>, FailoverError> {
    let mut out = Vec::new();
    for other in others {
        let mut r = connect(&other.url)
            .await
            .map_err(not_promoted(&other.name))?;
        let conninfo: String = sqlx::query_scalar("SHOW primary_conninfo")
            .fetch_one(&mut r)
            .await
            .map_err(not_promoted(&other.name))?;
        out.push((*other, conninfo));
    }
    Ok(out)
}

/// The `application_name` in a `primary_conninfo`: the standby's name.
fn application_name(conninfo: &str) -> Option<String> {
    conninfo
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("application_name="))
        .map(|app| app.trim_matches('\'').to_string())
}

/// Makes `names` the synchronous standbys of the replica about to be promoted, and waits
/// until a new session sees the setting (the reload has been read).
async fn require_standbys(best: &Seen, names: &[String]) -> Result<(), FailoverError> {
    let value = format!(
        "ANY 1 ({})",
        names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut c = connect(&best.url).await.map_err(not_promoted(&best.name))?;
    alter_system(&mut c, "synchronous_standby_names", &value)
        .await
        .map_err(not_promoted(&best.name))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut fresh = connect(&best.url).await.map_err(not_promoted(&best.name))?;
        let now: String = sqlx::query_scalar("SHOW synchronous_standby_names")
            .fetch_one(&mut fresh)
            .await
            .map_err(not_promoted(&best.name))?;
        if now == value {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(FailoverError::NotPromoted {
                server: best.name.clone(),
                error: format!("synchronous_standby_names is still {now:?} 10 s after a reload"),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Promotes `best` and waits (up to 60 s) until it accepts writes.
async fn promote(best: &Seen) -> Result<(), FailoverError> {
    let failed = |error: String| FailoverError::Promotion {
        server: best.name.clone(),
        error,
    };
    let mut c = connect(&best.url)
        .await
        .map_err(|e| FailoverError::NotPromoted {
            server: best.name.clone(),
            error: e.to_string(),
        })?;
    let ok: bool = sqlx::query_scalar("SELECT pg_promote(true, 60)")
        .fetch_one(&mut c)
        .await
        .map_err(|e| failed(e.to_string()))?;
    if ok {
        Ok(())
    } else {
        Err(failed("pg_promote did not finish in 60 s".into()))
    }
}

/// Points a replica at the new primary `host:port`, keeping its other connection keys.
async fn repoint_one(
    other: &Seen,
    conninfo: &str,
    host: &str,
    port: &str,
) -> Result<(), sqlx::Error> {
    let mut r = connect(&other.url).await?;
    alter_system(&mut r, "primary_conninfo", &repoint(conninfo, host, port)).await
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
/// replicas on each commit from the moment it is promoted, as the old one did.
///
/// # Errors
/// See [`FailoverError`]: each variant says what state the cluster was left in.
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
    let others: Vec<&Seen> = seen.iter().filter(|s| s.url != best.url).collect();
    let conninfos = read_conninfos(&others).await?;
    let standby_names: Vec<String> = conninfos
        .iter()
        .filter_map(|(_, c)| application_name(c))
        .collect();
    if synchronous && !standby_names.is_empty() {
        require_standbys(best, &standby_names).await?;
    } else if synchronous {
        tracing::warn!(server = %best.name, "no other replica answers: the new primary has no synchronous standby");
    }
    tracing::warn!(server = %best.name, position = best.received, "promoting");
    promote(best).await?;
    let took = started.elapsed();

    let (host, port) = best.name.rsplit_once(':').unwrap_or((&best.name, "5432"));
    let mut repointed = Vec::new();
    let mut failed = Vec::new();
    for (other, conninfo) in &conninfos {
        // one replica that refuses must not keep the others on the old primary
        match repoint_one(other, conninfo, host, port).await {
            Ok(()) => repointed.push(other.name.clone()),
            Err(e) => failed.push((other.name.clone(), e.to_string())),
        }
    }
    if !failed.is_empty() {
        return Err(FailoverError::Repoint {
            primary: best.name.clone(),
            failed,
        });
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
