//! Seeding: fills a running Crescendo (any rung, through its public API) with a data set of
//! realistic shape: a heavy-tailed follow graph (a few accounts followed by most, most
//! followed by few) or a real social graph, articles with tags, favourites and comments.
//!
//! Seeding is deterministic (a fixed pseudo-random sequence) and idempotent: users that
//! exist are signed in instead of registered, authors that already have their articles get no
//! more, and follows and favourites are idempotent in the API itself. Each write carries an
//! `Idempotency-Key` unique to the run and the item, and is sent again when its answer is
//! lost (see [`crate::client`]), so a connection closed under it never applies it twice.

use crate::client;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::Semaphore;

/// What to seed.
#[derive(Clone, Debug)]
pub struct SeedPlan {
    /// Users to create, named `bench_<n>`.
    pub users: usize,
    /// Follows made by each user, towards popular users more often (Zipf, s = 1).
    pub follows_per_user: usize,
    /// Articles in all, spread evenly over the users.
    pub articles: usize,
    /// Favourites made by each user, of random articles.
    pub favorites_per_user: usize,
    /// Comments in all, on random articles, by random users.
    pub comments: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Follows from a real social graph (user index pairs, followed both ways) instead of
    /// the generated heavy-tailed graph; `users` must cover every index.
    pub graph: Option<Vec<(usize, usize)>>,
    /// Only sign the users in and collect the slugs (for `--no-seed`): create nothing.
    pub sign_in_only: bool,
}

impl Default for SeedPlan {
    fn default() -> Self {
        Self {
            users: 200,
            follows_per_user: 20,
            articles: 2000,
            favorites_per_user: 10,
            comments: 2000,
            concurrency: 16,
            graph: None,
            sign_in_only: false,
        }
    }
}

/// Reads an edge list (`a b` per line, zero-based user indices; `#` comments and blank lines
/// skipped), as in `shared/datasets/socfb-Reed98/`. Returns the edges and the user count.
///
/// # Errors
/// An unreadable file or a line that is not two numbers.
pub fn read_graph(path: &std::path::Path) -> anyhow::Result<(Vec<(usize, usize)>, usize)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut edges = Vec::new();
    let mut users = 0;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('%') {
            continue;
        }
        let mut parts = line.split_whitespace().map(str::parse::<usize>);
        let (Some(Ok(a)), Some(Ok(b))) = (parts.next(), parts.next()) else {
            bail!(
                "{}:{}: expected two user indices, found {line:?}",
                path.display(),
                n + 1
            );
        };
        users = users.max(a + 1).max(b + 1);
        if a != b {
            edges.push((a, b));
        }
    }
    Ok((edges, users))
}

/// What was seeded: enough to drive load at it.
#[derive(Clone, Debug, Default)]
pub struct Seeded {
    /// A token per user, in user order (user `i` is `bench_<i>`).
    pub tokens: Vec<String>,
    /// Every article's slug.
    pub slugs: Vec<String>,
}

/// The username of seeded user `i`.
pub fn username(i: usize) -> String {
    format!("bench_{i}")
}

/// SplitMix64: a small, fixed pseudo-random sequence, so every run seeds the same shape;
/// the field is the state (any value is a valid seed).
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Picks ranks with probability proportional to 1 / (rank + 1).
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Self {
        let mut acc = 0.0;
        Self {
            cumulative: (0..n)
                .map(|r| {
                    acc += 1.0 / (r as f64 + 1.0);
                    acc
                })
                .collect(),
        }
    }
    fn sample(&self, rng: &mut Rng) -> usize {
        let total = *self.cumulative.last().expect("non-empty");
        let x = (rng.next_u64() as f64 / u64::MAX as f64) * total;
        self.cumulative
            .partition_point(|&c| c < x)
            .min(self.cumulative.len() - 1)
    }
}

const TAGS: &[&str] = &[
    "rust",
    "databases",
    "scaling",
    "caching",
    "queues",
    "sharding",
    "replication",
    "latency",
    "dragons",
    "training",
    "cooking",
    "travel",
    "photography",
    "music",
    "books",
    "design",
    "testing",
    "security",
    "networking",
    "linux",
    "postgres",
    "redis",
    "haproxy",
    "varnish",
    "nats",
    "metrics",
    "tracing",
    "web",
    "mobile",
    "history",
];

/// POSTs `body` (or nothing) to `url` as the holder of `token`, under the idempotency `key`;
/// any answer but 2xx is an error.
async fn post_as(
    client: &reqwest::Client,
    url: String,
    token: &str,
    body: Option<Value>,
    key: &str,
) -> anyhow::Result<Value> {
    let mut req = client
        .post(&url)
        .header("authorization", format!("Token {token}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let (status, v) = client::send_retrying(req, Some(key)).await?;
    if !status.is_success() {
        bail!("POST {url}: {status} {v}");
    }
    Ok(v)
}

/// Runs `f` over `items` with at most `limit` at once, printing progress under `label`.
async fn each<T, F, Fut>(label: &str, items: Vec<T>, limit: usize, f: F) -> anyhow::Result<()>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let total = items.len();
    let done = Arc::new(AtomicUsize::new(0));
    let permits = Arc::new(Semaphore::new(limit.max(1)));
    let f = Arc::new(f);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for item in items {
        let (permits, f, done) = (Arc::clone(&permits), Arc::clone(&f), Arc::clone(&done));
        let label = label.to_string();
        tasks.spawn(async move {
            let _p = permits.acquire().await.expect("semaphore open");
            f(item).await?;
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            if n % 500 == 0 || n == total {
                eprintln!("  {label}: {n}/{total}");
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    eprintln!("  {label}: done in {:.1}s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Follows towards low-numbered (popular) users, Zipf-distributed.
fn heavy_tailed_follows(plan: &SeedPlan, rng: &mut Rng) -> Vec<(usize, usize)> {
    let zipf = Zipf::new(plan.users);
    let mut follows = Vec::new();
    for i in 0..plan.users {
        let mut chosen = std::collections::BTreeSet::new();
        let mut tries = 0;
        while chosen.len() < plan.follows_per_user.min(plan.users - 1)
            && tries < plan.follows_per_user * 50
        {
            let t = zipf.sample(rng);
            if t != i {
                chosen.insert(t);
            }
            tries += 1;
        }
        follows.extend(chosen.into_iter().map(|t| (i, t)));
    }
    follows
}

/// Every article's slug, through the public list.
async fn all_slugs(client: &reqwest::Client, api: &str) -> anyhow::Result<Vec<String>> {
    let mut slugs = Vec::new();
    loop {
        let page = client.get(format!("{api}/articles?limit=100&offset={}", slugs.len()));
        let (_, v) = client::send_retrying(page, None).await?;
        let page = v["articles"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            return Ok(slugs);
        }
        slugs.extend(
            page.iter()
                .filter_map(|a| a["slug"].as_str().map(str::to_string)),
        );
    }
}

/// Seeds `base` (e.g. `http://127.0.0.1:8080`) with `plan`.
///
/// # Errors
/// The target refuses a request in a way seeding cannot work around.
pub async fn seed(base: &str, plan: &SeedPlan) -> anyhow::Result<Seeded> {
    let api = format!("{}/api", base.trim_end_matches('/'));
    let client = client::builder(plan.concurrency).build()?;
    let mut rng = Rng(0x00c0_ffee);
    eprintln!(
        "seeding {api}: {} users, {} articles",
        plan.users, plan.articles
    );
    let seeder = Seeder {
        api,
        client,
        concurrency: plan.concurrency,
        run: run_id(),
    };

    let tokens = seeder.sign_in_users(plan.users).await?;
    if plan.sign_in_only {
        let slugs = all_slugs(&seeder.client, &seeder.api).await?;
        return Ok(Seeded { tokens, slugs });
    }

    let follows = match &plan.graph {
        // a real graph: friendships, followed both ways
        Some(edges) => edges
            .iter()
            .flat_map(|&(a, b)| [(a, b), (b, a)])
            .filter(|&(a, b)| a < plan.users && b < plan.users)
            .collect(),
        None => heavy_tailed_follows(plan, &mut rng),
    };
    seeder
        .post_each("follows", &tokens, follows, |api, _, t| {
            (format!("{api}/profiles/bench_{t}/follow"), None)
        })
        .await?;

    let to_create = seeder.articles_to_create(plan, &mut rng).await?;
    seeder
        .post_each("articles", &tokens, to_create, article_request)
        .await?;

    let slugs = all_slugs(&seeder.client, &seeder.api).await?;
    if slugs.is_empty() {
        if plan.articles > 0 {
            bail!("no articles found after seeding");
        }
        return Ok(Seeded { tokens, slugs });
    }

    // favourites and comments on random articles
    let mut favs = Vec::new();
    for i in 0..plan.users {
        for _ in 0..plan.favorites_per_user {
            favs.push((i, slugs[rng.below(slugs.len())].clone()));
        }
    }
    let comments: Vec<(usize, String)> = (0..plan.comments)
        .map(|_| (rng.below(plan.users), slugs[rng.below(slugs.len())].clone()))
        .collect();
    seeder
        .post_each("favorites", &tokens, favs, |api, _, slug| {
            (format!("{api}/articles/{slug}/favorite"), None)
        })
        .await?;
    seeder
        .post_each("comments", &tokens, comments, |api, i, slug| {
            let body = json!({"comment": {"body": format!("A thought from bench_{i}")}});
            (format!("{api}/articles/{slug}/comments"), Some(body))
        })
        .await?;
    Ok(Seeded { tokens, slugs })
}

/// An article to create: its number among its author's, its tags, and its length in words.
type ArticleSpec = (usize, Vec<String>, usize);

/// Where and how seeding sends its requests.
struct Seeder {
    /// The target's API root, `…/api`.
    api: String,
    client: reqwest::Client,
    /// Requests in flight at once.
    concurrency: usize,
    /// Unique to this seeding run: the prefix of its idempotency keys, so a key never
    /// replays the outcome of another run's request.
    run: String,
}

/// A prefix unique to this run of seeding: the time in nanoseconds and the process ID.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("seed-{nanos:x}-{}", std::process::id())
}

impl Seeder {
    /// Registers users `0..users`, or signs in those that exist already; their tokens, in
    /// user order.
    async fn sign_in_users(&self, users: usize) -> anyhow::Result<Vec<String>> {
        let tokens = Arc::new(std::sync::Mutex::new(vec![String::new(); users]));
        {
            let (api, client, tokens, run) = (
                self.api.clone(),
                self.client.clone(),
                Arc::clone(&tokens),
                self.run.clone(),
            );
            each("users", (0..users).collect(), self.concurrency, move |i| {
                let (api, client, tokens) = (api.clone(), client.clone(), Arc::clone(&tokens));
                let key = format!("{run}-users-{i}");
                async move {
                    let (name, email) = (format!("bench_{i}"), format!("bench_{i}@example.com"));
                    let body = json!({"user": {"username": name, "email": email, "password": "benchpassword"}});
                    let register = client.post(format!("{api}/users")).json(&body);
                    let (status, v) = client::send_retrying(register, Some(&key)).await?;
                    let v = if status.as_u16() == 201 {
                        v
                    } else {
                        let login = json!({"user": {"email": email, "password": "benchpassword"}});
                        let login = client.post(format!("{api}/users/login")).json(&login);
                        let (status, v) = client::send_retrying(login, None).await?;
                        if !status.is_success() {
                            bail!("cannot register or sign in {name}: {status} {v}");
                        }
                        v
                    };
                    tokens.lock().expect("lock")[i] = v["user"]["token"].as_str().context("no token")?.to_string();
                    Ok(())
                }
            })
            .await?;
        }
        let tokens = tokens.lock().expect("lock").clone();
        Ok(tokens)
    }

    /// The articles still to create, by author: evenly over the users, and none for authors
    /// that have theirs already.
    async fn articles_to_create(
        &self,
        plan: &SeedPlan,
        rng: &mut Rng,
    ) -> anyhow::Result<Vec<(usize, ArticleSpec)>> {
        let api = &self.api;
        let per_user = plan.articles.div_ceil(plan.users.max(1));
        let mut to_create = Vec::new();
        for i in 0..plan.users {
            let want = per_user.min(plan.articles.saturating_sub(i * per_user));
            let count = (self.client).get(format!("{api}/articles?author=bench_{i}&limit=0"));
            let (_, v) = client::send_retrying(count, None).await?;
            let have = v["articlesCount"].as_u64().unwrap_or(0) as usize;
            for k in have..want {
                let ntags = 1 + rng.below(4);
                let mut tags: Vec<&str> = (0..ntags).map(|_| TAGS[rng.below(TAGS.len())]).collect();
                tags.dedup();
                let words = 50 + rng.below(400);
                to_create.push((i, (k, tags.iter().map(|t| t.to_string()).collect(), words)));
            }
        }
        Ok(to_create)
    }

    /// POSTs one request per item, as the item's user (the index into `tokens`), at most
    /// `concurrency` at once; `request` gives the URL and body from the API root, the user
    /// and the item. Any answer but 2xx is an error.
    async fn post_each<X, F>(
        &self,
        label: &str,
        tokens: &[String],
        items: Vec<(usize, X)>,
        request: F,
    ) -> anyhow::Result<()>
    where
        X: Send + 'static,
        F: Fn(&str, usize, X) -> (String, Option<Value>) + Send + Sync + 'static,
    {
        let (api, client, tokens) = (self.api.clone(), self.client.clone(), tokens.to_vec());
        let prefix = format!("{}-{label}", self.run);
        let items: Vec<_> = items.into_iter().enumerate().collect();
        each(label, items, self.concurrency, move |(n, (i, x))| {
            let (client, token) = (client.clone(), tokens[i].clone());
            let (url, body) = request(&api, i, x);
            let key = format!("{prefix}-{n}");
            async move { post_as(&client, url, &token, body, &key).await.map(drop) }
        })
        .await
    }
}

/// The URL and body that create article `k` of user `i`.
fn article_request(api: &str, i: usize, (k, tags, words): ArticleSpec) -> (String, Option<Value>) {
    let body: String = (0..words)
        .map(|w| ["scale", "cache", "shard", "queue", "replica", "node"][w % 6])
        .collect::<Vec<_>>()
        .join(" ");
    let article = json!({"article": {
        "title": format!("Notes on {} number {k} by bench {i}", tags[0]),
        "description": format!("What bench_{i} learned about {}", tags.join(", ")),
        "body": body,
        "tagList": tags,
    }});
    (format!("{api}/articles"), Some(article))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_low_ranks_heavily() {
        let z = Zipf::new(200);
        let mut rng = Rng(1);
        let mut counts = vec![0usize; 200];
        for _ in 0..20_000 {
            counts[z.sample(&mut rng)] += 1;
        }
        assert!(
            counts[0] > 10 * counts[100],
            "rank 0: {}, rank 100: {}",
            counts[0],
            counts[100]
        );
        assert!(
            counts.iter().filter(|&&c| c > 0).count() > 150,
            "the tail is still reached"
        );
    }
}
