//! Micro-benchmarks of the hot paths: `cargo bench -p crescendo-api`.
//!
//! - making IDs; parsing a slug to route it;
//! - serialising a page of 20 articles (first time, and from cached renderings);
//! - a cache hit through the read-through layer.

use crescendo_app::{ArticleView, Cached, Profile, ProfileView};
use crescendo_cache::{MemoryCache, ReadThrough};
use crescendo_domain::{Id, IdGen, LogicalShard, Slug};
use crescendo_store::ArticleRecord;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn page() -> Vec<ArticleView> {
    (0..20)
        .map(|i| {
            let id = Id::from_i64(120_000_000_000_000 + i * 4096);
            let article = ArticleRecord {
                id,
                author_id: Id::from_i64(7),
                slug: Slug::format(&format!("Notes on scaling number {i}"), id),
                title: format!("Notes on scaling number {i}"),
                description: "What one learns about caches, queues and replicas".into(),
                body: "scale cache shard queue replica node ".repeat(60),
                tags: vec!["caching".into(), "rust".into(), "scaling".into()],
                created_at: 1_790_000_000_000 + i,
                updated_at: 1_790_000_000_000 + i,
                favorites_count: i,
                cover_image: String::new(),
            };
            let profile = Profile {
                id: Id::from_i64(7),
                username: "bench_7".into(),
                bio: "".into(),
                image: "".into(),
            };
            ArticleView {
                article: Arc::new(Cached::new(article)),
                author: ProfileView {
                    profile: Arc::new(Cached::new(profile)),
                    following: i % 2 == 0,
                },
                favorited: i % 3 == 0,
            }
        })
        .collect()
}

fn ids_and_slugs(c: &mut Criterion) {
    let g = IdGen::new();
    c.bench_function("id/next_id", |b| {
        b.iter(|| black_box(g.next_id(LogicalShard::new(42))))
    });
    let slug = Slug::format("How to train your dragon", g.next_id(LogicalShard::new(1)));
    c.bench_function("slug/parse_and_route", |b| {
        b.iter(|| black_box(Slug::parse(black_box(&slug)).map(|s| s.id().shard())))
    });
}

fn serialise(c: &mut Criterion) {
    c.bench_function("json/page_of_20_first_render", |b| {
        b.iter_batched(
            page,
            |p| black_box(crescendo_api::articles_json(&p, 2000)),
            criterion::BatchSize::SmallInput,
        )
    });
    let p = page();
    crescendo_api::articles_json(&p, 2000);
    c.bench_function("json/page_of_20_cached_renders", |b| {
        b.iter(|| black_box(crescendo_api::articles_json(&p, 2000)))
    });
}

fn cache_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let cache = ReadThrough::new(
        Arc::new(MemoryCache::new(1 << 24)),
        1 << 24,
        Duration::from_secs(300),
        Duration::from_secs(30),
    );
    let value = page().remove(0).article;
    rt.block_on(
        cache.get_or_load("article:1", Duration::from_secs(300), |_| async {
            Ok::<_, ()>(Some((*value).clone_record()))
        }),
    )
    .expect("filled");
    c.bench_function("cache/read_through_hit", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                cache
                    .get_or_load::<ArticleRecord, (), _, _>(
                        "article:1",
                        Duration::from_secs(300),
                        |_| async { Ok(None) },
                    )
                    .await
                    .expect("hit"),
            )
        })
    });
}

trait CloneRecord {
    fn clone_record(&self) -> ArticleRecord;
}
impl CloneRecord for Cached<ArticleRecord> {
    fn clone_record(&self) -> ArticleRecord {
        (**self).clone()
    }
}

criterion_group!(benches, ids_and_slugs, serialise, cache_hit);
criterion_main!(benches);
