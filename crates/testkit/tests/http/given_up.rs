//! An upload whose image job is given up (its workers died on it every time) becomes
//! `failed`, with a reason its owner reads, and the job a dead letter: never `processing`
//! forever.

use super::uploads::{png, upload, wait_settled};
use crescendo_testkit::TestApp;
use crescendo_worker::{Variants, Worker, WorkerOptions};
use reqwest::StatusCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const QUEUE: &str = "images.variants";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_workers_die_every_time_fails_with_a_reason() {
    // arrange: a server without workers; the test's unanswered claims stand for workers
    // killed holding the job (a zero lease has run out at once)
    let app = TestApp::spawn_with(|s| {
        s.queue.workers = 0;
        s.queue.max_attempts = 2;
    })
    .await;
    let token = app.register("pixel").await;
    let (status, body) = upload(&app, Some(&token), "file", "a.png", &png(40, 20)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["upload"]["id"].as_str().unwrap().to_string();
    let started = Instant::now();
    let mut claims = 0;
    while claims < 2 {
        // the outbox relay hands the job to the queue soon after the upload commits
        if app
            .app
            .claim_job(QUEUE, Duration::ZERO)
            .await
            .unwrap()
            .is_some()
        {
            claims += 1;
        } else {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no job to claim"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // act: a worker comes up
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(
        Worker::new(app.app.clone(), WorkerOptions::default())
            .serve(Arc::new(Variants(app.app.clone())))
            .run(stopped),
    );

    // assert: failed with the reason, and the job dead rather than run a third time
    let settled = wait_settled(&app, &token, &id).await;
    assert_eq!(settled["state"], "failed", "{settled}");
    assert_eq!(
        settled["reason"],
        "the image could not be processed: \
         delivered 2 times without an answer (workers died or timed out)"
    );
    let depth = loop {
        let depth = app.app.queue_depth(QUEUE).await.unwrap();
        if depth.dead == 1 || started.elapsed() > Duration::from_secs(20) {
            break depth;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((depth.pending, depth.dead), (0, 1));
    stop.send(true).unwrap();
    worker.await.unwrap();
    app.stop().await;
}
