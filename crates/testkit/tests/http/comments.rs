use crescendo_testkit::{Answer, TestApp};
use reqwest::StatusCode;
use serde_json::json;

/// Posts a comment saying `body` to `comments` (an article's comments path) as `token`.
async fn comment_on(app: &TestApp, comments: &str, token: Option<&str>, body: &str) -> Answer {
    let comment = json!({"comment": {"body": body}});
    app.post(comments, token, comment).await
}

/// How many comments `comments` (an article's comments path) lists.
async fn comment_count(app: &TestApp, comments: &str) -> usize {
    let list = app.get(comments, None).await;
    list.json["comments"].as_array().unwrap().len()
}

#[tokio::test]
async fn comments_are_added_listed_and_deleted_by_their_author_only() {
    let app = TestApp::spawn().await;
    let (jake, ann) = (app.register("jake").await, app.register("ann").await);
    let a = app.create_article(&jake, "Post", &[]).await;
    let base = format!("/api/articles/{}/comments", a["slug"].as_str().unwrap());
    let c = comment_on(&app, &base, Some(&ann), "Thank you so much!").await;
    assert_eq!(c.status, StatusCode::OK);
    let id = c.json["comment"]["id"].as_i64().expect("a numeric id");
    assert!(
        id > 0 && id < (1i64 << 53),
        "ids stay exact in JavaScript: {id}"
    );
    assert_eq!(c.json["comment"]["author"]["username"], "ann");
    comment_on(&app, &base, Some(&jake), "You're welcome").await;

    let list = app.get(&base, None).await;
    let bodies: Vec<&str> = list.json["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["Thank you so much!", "You're welcome"]);

    // each delete in turn: by whom, and the status it gets
    let comment = format!("{base}/{id}");
    for (who, status) in [
        (Some(&jake), StatusCode::FORBIDDEN),
        (None, StatusCode::UNAUTHORIZED),
        (Some(&ann), StatusCode::NO_CONTENT),
        (Some(&ann), StatusCode::NOT_FOUND),
    ] {
        let d = app.delete(&comment, who.map(String::as_str)).await;
        assert_eq!(d.status, status, "{who:?}");
    }
    let malformed = app.delete(&format!("{base}/notanumber"), Some(&ann)).await;
    assert_eq!(malformed.status, StatusCode::NOT_FOUND);
    assert_eq!(comment_count(&app, &base).await, 1);

    let blank = comment_on(&app, &base, Some(&ann), "").await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(blank.json["errors"]["body"][0], "body can't be blank");
    let anonymous = comment_on(&app, &base, None, "x").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let none = "/api/articles/none-1/comments";
    assert_eq!(app.get(none, None).await.status, StatusCode::NOT_FOUND);
    let on_none = comment_on(&app, none, Some(&ann), "x").await;
    assert_eq!(on_none.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deleting_an_article_deletes_its_comments() {
    let app = TestApp::spawn().await;
    let jake = app.register("jake").await;
    let a = app.create_article(&jake, "Post", &[]).await;
    let slug = a["slug"].as_str().unwrap();
    let comments = format!("/api/articles/{slug}/comments");
    comment_on(&app, &comments, Some(&jake), "hi").await;
    assert_eq!(comment_count(&app, &comments).await, 1);
    app.delete(&format!("/api/articles/{slug}"), Some(&jake))
        .await;
    let gone = app.get(&comments, None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}
