//! Applies the numbered SQL files of `migrations/sqlite/` in order, each in its own
//! transaction, recording them in `schema_migrations`.

use crate::clock::now_ms;
use rusqlite::Connection;

/// (version, file name, SQL), in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_initial.sql",
        include_str!("../../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "0002_jobs.sql",
        include_str!("../../../migrations/sqlite/0002_jobs.sql"),
    ),
    (
        3,
        "0003_uploads.sql",
        include_str!("../../../migrations/sqlite/0003_uploads.sql"),
    ),
];

/// Brings the schema up to date; returns how many migrations ran.
pub(crate) fn migrate(conn: &mut Connection) -> rusqlite::Result<usize> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT    NOT NULL,
             applied_at INTEGER NOT NULL
         ) STRICT;",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let mut ran = 0;
    for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > current) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![version, name, now_ms()],
        )?;
        tx.commit()?;
        tracing::info!(version, name, "applied migration");
        ran += 1;
    }
    Ok(ran)
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, (v, name, _)) in super::MIGRATIONS.iter().enumerate() {
            assert_eq!(*v, i as i64 + 1);
            assert!(name.starts_with(&format!("{v:04}_")), "{name}");
        }
    }

    #[test]
    fn migrating_twice_runs_each_once() {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        assert_eq!(super::migrate(&mut c).unwrap(), super::MIGRATIONS.len());
        assert_eq!(super::migrate(&mut c).unwrap(), 0);
    }
}
