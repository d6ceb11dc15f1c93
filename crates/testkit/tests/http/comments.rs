use crescendo_testkit::TestApp;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn comments_are_added_listed_and_deleted_by_their_author_only() {
    let app = TestApp::spawn().await;
    let (jake, ann) = (app.register("jake").await, app.register("ann").await);
    let a = app.create_article(&jake, "Post", &[]).await;
    let base = format!("/api/articles/{}/comments", a["slug"].as_str().unwrap());
    let c = app
        .post(
            &base,
            Some(&ann),
            json!({"comment": {"body": "Thank you so much!"}}),
        )
        .await;
    assert_eq!(c.status, StatusCode::OK);
    let id = c.json["comment"]["id"].as_i64().expect("a numeric id");
    assert!(
        id > 0 && id < (1i64 << 53),
        "ids stay exact in JavaScript: {id}"
    );
    assert_eq!(c.json["comment"]["author"]["username"], "ann");
    app.post(
        &base,
        Some(&jake),
        json!({"comment": {"body": "You're welcome"}}),
    )
    .await;

    let list = app.get(&base, None).await;
    let bodies: Vec<&str> = list.json["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["Thank you so much!", "You're welcome"]);

    assert_eq!(
        app.delete(&format!("{base}/{id}"), Some(&jake))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.delete(&format!("{base}/{id}"), None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.delete(&format!("{base}/{id}"), Some(&ann)).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(&format!("{base}/{id}"), Some(&ann)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("{base}/notanumber"), Some(&ann))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&base, None).await.json["comments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let blank = app
        .post(&base, Some(&ann), json!({"comment": {"body": ""}}))
        .await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(blank.json["errors"]["body"][0], "body can't be blank");
    assert_eq!(
        app.post(&base, None, json!({"comment": {"body": "x"}}))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/articles/none-1/comments", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post(
            "/api/articles/none-1/comments",
            Some(&ann),
            json!({"comment": {"body": "x"}})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn deleting_an_article_deletes_its_comments() {
    let app = TestApp::spawn().await;
    let jake = app.register("jake").await;
    let a = app.create_article(&jake, "Post", &[]).await;
    let slug = a["slug"].as_str().unwrap();
    app.post(
        &format!("/api/articles/{slug}/comments"),
        Some(&jake),
        json!({"comment": {"body": "hi"}}),
    )
    .await;
    assert_eq!(
        app.get(&format!("/api/articles/{slug}/comments"), None)
            .await
            .json["comments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.delete(&format!("/api/articles/{slug}"), Some(&jake))
        .await;
    assert_eq!(
        app.get(&format!("/api/articles/{slug}/comments"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}
