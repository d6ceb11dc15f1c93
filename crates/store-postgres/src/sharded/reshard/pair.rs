//! One (source, target) pair of a run: the publication and subscription between them, and
//! the per-batch cut-over with its fence, mark, and counts and checksums.

use super::{ReshardOptions, TABLES, array, other};
use crate::db::{Db, map_err};
use crate::sharded::db::Shards;
use crescendo_store::StoreResult;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One source and one target of a run.
pub(super) struct Pair<'a> {
    from: &'a str,
    to: &'a str,
    source: &'a Db,
    target: &'a Db,
    pub(super) source_admin: PgPool,
    target_admin: PgPool,
    source_url: String,
    /// The schema the application's tables are in (the same on both).
    schema: String,
    pub(super) name: String,
}

async fn admin_pool(opts: &ReshardOptions, cluster: &str) -> StoreResult<(PgPool, String)> {
    let url = opts
        .admin_urls
        .iter()
        .find(|(n, _)| n == cluster)
        .map(|(_, u)| u.clone())
        .ok_or_else(|| other(format!("no admin URL for cluster {cluster}")))?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .map_err(map_err)?;
    Ok((pool, url))
}

pub(super) async fn run_sql(pool: &PgPool, sql: String) -> StoreResult<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .map(drop)
        .map_err(map_err)
}

impl<'a> Pair<'a> {
    pub(super) async fn open(
        s: &'a Shards,
        opts: &ReshardOptions,
        from: &'a str,
        to: &'a str,
    ) -> StoreResult<Self> {
        let (source_admin, source_url) = admin_pool(opts, from).await?;
        let (target_admin, _) = admin_pool(opts, to).await?;
        let source = s
            .find(from)
            .ok_or_else(|| other(format!("unknown cluster {from}")))?;
        let target = s
            .find(to)
            .ok_or_else(|| other(format!("unknown cluster {to}")))?;
        let schema: String = source
            .read_primary(|pool| async move {
                sqlx::query_scalar("SELECT current_schema()")
                    .fetch_one(&pool)
                    .await
                    .map_err(map_err)
            })
            .await?;
        Ok(Self {
            from,
            to,
            source,
            target,
            source_admin,
            target_admin,
            source_url,
            schema,
            name: format!("crescendo_move_{from}_to_{to}").replace('-', "_"),
        })
    }

    /// Clears what an interrupted run left: its subscription and publication, the target's
    /// copies of the shards still to move, and the source's ownership of them.
    pub(super) async fn reset(&self, shards: &[u16]) -> StoreResult<()> {
        let (name, schema) = (&self.name, &self.schema);
        let exists: Option<String> =
            sqlx::query_scalar("SELECT subname::text FROM pg_subscription WHERE subname = $1")
                .bind(name)
                .fetch_optional(&self.target_admin)
                .await
                .map_err(map_err)?;
        if exists.is_some() {
            run_sql(&self.target_admin, format!("DROP SUBSCRIPTION {name}")).await?;
        }
        run_sql(
            &self.source_admin,
            format!("DROP PUBLICATION IF EXISTS {name}"),
        )
        .await?;
        let list = array(shards);
        let mut clear = format!(
            "DELETE FROM {schema}.owned_shards WHERE shard = ANY({list});
             DELETE FROM {schema}.reshard_marks WHERE source = '{}';",
            self.from
        );
        for (table, column) in TABLES.iter().rev() {
            clear.push_str(&format!(
                "DELETE FROM {schema}.{table} WHERE ({column} & 4095) = ANY({list});"
            ));
        }
        run_sql(&self.target_admin, clear).await?;
        run_sql(
            &self.source_admin,
            format!(
                "INSERT INTO {schema}.owned_shards SELECT unnest({list}) ON CONFLICT DO NOTHING;
                 DELETE FROM {schema}.reshard_marks WHERE source = '{}';",
                self.from
            ),
        )
        .await
    }

    /// Publishes `shards` on the source, subscribes the target, and waits for the copy.
    pub(super) async fn subscribe(
        &self,
        shards: &[u16],
        progress: &(dyn Fn(&str) + Sync),
    ) -> StoreResult<()> {
        let (name, schema) = (&self.name, &self.schema);
        let list = array(shards);
        let mut tables: Vec<String> = TABLES
            .iter()
            .map(|(t, c)| format!("{schema}.{t} WHERE (({c} & 4095) = ANY({list}))"))
            .collect();
        tables.push(format!(
            "{schema}.reshard_marks WHERE (source = '{}')",
            self.from
        ));
        run_sql(
            &self.source_admin,
            format!(
                "CREATE PUBLICATION {name} FOR TABLE {} WITH (publish = 'insert, update, delete')",
                tables.join(", ")
            ),
        )
        .await?;
        let conninfo = self.source_url.replace('\'', "''");
        run_sql(
            &self.target_admin,
            format!("CREATE SUBSCRIPTION {name} CONNECTION '{conninfo}' PUBLICATION {name} WITH (copy_data = true)"),
        )
        .await?;
        progress(&format!(
            "{} -> {}: copying {} shards",
            self.from,
            self.to,
            shards.len()
        ));
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let (tables, ready): (i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE r.srsubstate IN ('r', 's'))
                 FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
                 WHERE s.subname = $1",
            )
            .bind(name)
            .fetch_one(&self.target_admin)
            .await
            .map_err(map_err)?;
            if tables as usize == TABLES.len() + 1 && ready == tables {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(other(format!(
                    "{name}: the initial copy did not finish within 10 minutes"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Moves `batch` (see the module's notes); returns how many rows it holds.
    pub(super) async fn cut_over(&self, s: &Shards, batch: &[u16], n: usize) -> StoreResult<u64> {
        let shards: Vec<i32> = batch.iter().map(|&b| i32::from(b)).collect();
        // fence: waits for the writes in flight, refuses the rest
        let fence = sqlx::query("DELETE FROM owned_shards WHERE shard = ANY($1)").bind(&shards);
        self.source.execute(fence).await?;
        let mark = sqlx::query("INSERT INTO reshard_marks (source, batch) VALUES ($1, $2)")
            .bind(self.from)
            .bind(n as i64);
        self.source.execute(mark).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let arrived: Option<i64> = self
                .target
                .read_primary(|pool| async move {
                    sqlx::query_scalar(
                        "SELECT batch FROM reshard_marks WHERE source = $1 AND batch = $2",
                    )
                    .bind(self.from)
                    .bind(n as i64)
                    .fetch_optional(&pool)
                    .await
                    .map_err(map_err)
                })
                .await?;
            if arrived.is_some() {
                break;
            }
            if Instant::now() > deadline {
                self.unfence(&shards).await?;
                return Err(other(
                    "the target did not confirm the source's position within 60 s",
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let here = checksums(self.source, &shards).await?;
        let there = checksums(self.target, &shards).await?;
        if here != there {
            self.unfence(&shards).await?;
            return Err(other(format!(
                "logical shards {batch:?}: rows differ between {} and {} after the copy",
                self.from, self.to
            )));
        }
        let own =
            sqlx::query("INSERT INTO owned_shards SELECT unnest($1::int[]) ON CONFLICT DO NOTHING")
                .bind(&shards);
        self.target.execute(own).await?;
        let mut tx = s.catalogue.begin().await?;
        for sql in [
            "UPDATE shard_homes SET cluster = $2 WHERE shard = ANY($1)",
            "UPDATE reshard_moves SET moved = true WHERE shard = ANY($1) AND $2 = to_cluster",
        ] {
            sqlx::query(sql)
                .bind(&shards)
                .bind(self.to)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        sqlx::query("UPDATE map_epoch SET epoch = epoch + 1")
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        s.catalogue.commit(tx).await?;
        s.refresh().await?;
        Ok(here.values().map(|(rows, _)| *rows as u64).sum())
    }

    /// Gives `shards` back to the source (a cut-over that failed its checks).
    async fn unfence(&self, shards: &[i32]) -> StoreResult<()> {
        let own =
            sqlx::query("INSERT INTO owned_shards SELECT unnest($1::int[]) ON CONFLICT DO NOTHING")
                .bind(shards);
        self.source.execute(own).await.map(drop)
    }

    pub(super) async fn unsubscribe(&self) -> StoreResult<()> {
        run_sql(
            &self.target_admin,
            format!("DROP SUBSCRIPTION {}", self.name),
        )
        .await?;
        run_sql(
            &self.source_admin,
            format!("DROP PUBLICATION {}", self.name),
        )
        .await
    }
}

/// Per (table, logical shard): rows and the sum of their rows' hashes, on `db`.
async fn checksums(db: &Db, shards: &[i32]) -> StoreResult<BTreeMap<(String, i32), (i64, String)>> {
    let mut out = BTreeMap::new();
    for (table, column) in TABLES {
        let rows: Vec<(i32, i64, String)> = db
            .read_primary(|pool| async move {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT ({column} & 4095)::int, COUNT(*), SUM(hashtextextended(t::text, 0)::numeric)::text
                     FROM {table} t WHERE ({column} & 4095) = ANY($1) GROUP BY 1"
                )))
                .bind(shards)
                .fetch_all(&pool)
                .await
                .map_err(map_err)
            })
            .await?;
        for (shard, n, sum) in rows {
            out.insert((table.to_string(), shard), (n, sum));
        }
    }
    Ok(out)
}
