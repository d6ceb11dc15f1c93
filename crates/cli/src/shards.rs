//! `crescendo shards`: the shard map of a sharded store, as a table or JSON.

use crescendo_config::Settings;

/// Prints the shard map of the settings' sharded store: a table, or JSON with `json`.
pub(crate) async fn print(settings: &Settings, json: bool) -> anyhow::Result<()> {
    crescendo_telemetry::init_logs(settings.log.format, "warn");
    let (epoch, clusters) = crescendo_server::ops::shards(settings).await?;
    if json {
        let clusters: Vec<serde_json::Value> = clusters
            .iter()
            .map(|c| {
                serde_json::json!({"cluster": c.name, "shards": c.shards, "users": c.users,
                    "articles": c.articles, "rows": c.rows})
            })
            .collect();
        let out = serde_json::json!({"epoch": epoch, "clusters": clusters});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let total: usize = clusters.iter().map(|c| c.shards).sum();
    println!(
        "shard map epoch {epoch}: {total} logical shards on {} clusters",
        clusters.len()
    );
    println!(
        "{:<12} {:>7} {:>7} {:>9} {:>9} {:>10}",
        "cluster", "shards", "share", "users", "articles", "rows"
    );
    for c in &clusters {
        let share = 100.0 * c.shards as f64 / total.max(1) as f64;
        println!(
            "{:<12} {:>7} {:>6.1}% {:>9} {:>9} {:>10}",
            c.name, c.shards, share, c.users, c.articles, c.rows
        );
    }
    Ok(())
}
