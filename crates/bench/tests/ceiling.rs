//! `crescendo ceiling`'s answers: fetched once from a real server, then served from memory
//! by the stack of `serve`, byte for byte.

use crescendo_testkit::TestApp;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_answers_are_served_from_memory_as_the_target_gave_them() {
    // arrange: a server, and the ceiling of three of its paths (one of them a 404)
    let app = TestApp::spawn().await;
    let base = format!("http://{}", app.addr);
    let paths: Vec<String> = ["/api/articles?limit=20", "/api/tags", "/api/articles/nope"]
        .map(String::from)
        .to_vec();
    let answers = crescendo_bench::ceiling::fetch(&base, &paths, None)
        .await
        .unwrap();
    let mut settings = crescendo_config::Settings::default();
    settings.http.listen = "127.0.0.1:0".parse().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ceiling = crescendo_server::serve_ceiling(&settings, Arc::new(answers), async {
        let _ = stopped.await;
    })
    .await
    .unwrap();

    // act and assert: each path answers from the ceiling as it does from the target
    for path in &paths {
        let direct = reqwest::get(format!("{base}{path}")).await.unwrap();
        let served = reqwest::get(format!("http://{}{path}", ceiling.addr))
            .await
            .unwrap();
        assert_eq!(served.status(), direct.status(), "{path}");
        assert_eq!(
            served.headers()["content-type"],
            direct.headers()["content-type"],
            "{path}"
        );
        assert_eq!(
            served.bytes().await.unwrap(),
            direct.bytes().await.unwrap(),
            "{path}"
        );
    }
    stop.send(()).unwrap();
    ceiling.done.await.unwrap();
}

#[tokio::test]
async fn a_path_without_its_leading_slash_is_refused_by_name() {
    let e = crescendo_bench::ceiling::fetch("http://127.0.0.1:1", &["api/tags".into()], None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("\"api/tags\""), "{e:#}");
}
