//! The web pages, through a browser without JavaScript: pages, forms, sessions, CSRF,
//! authorisation, escaping and sign-in limits.

use crate::articles::post_article;
use crescendo_testkit::{Browser, Page, TestApp};
use reqwest::StatusCode;
use serde_json::json;

/// Posts the sign-in form as `email` with `password` and the form's token `csrf`.
pub(crate) async fn sign_in_page(b: &mut Browser, email: &str, password: &str, csrf: &str) -> Page {
    let fields = [("email", email), ("password", password), ("csrf", csrf)];
    b.post("/login", &fields).await
}

/// Posts the editor form at `path` with an article's title, description, body and tags, and
/// the form's token `csrf`.
pub(crate) async fn write_article(
    b: &mut Browser,
    path: &str,
    article: [&str; 4],
    csrf: &str,
) -> Page {
    let [title, description, body, tags] = article;
    let fields = [
        ("title", title),
        ("description", description),
        ("body", body),
        ("tags", tags),
        ("csrf", csrf),
    ];
    b.post(path, &fields).await
}

#[tokio::test]
async fn anonymous_visitors_see_the_home_article_tag_and_profile_pages() {
    let app = TestApp::spawn().await;
    let token = app.register("alice").await;
    let a = post_article(&app, &token, json!({"title": "Hello web", "description": "first", "body": "# Big news\n\nSome *emphasis*.", "tagList": ["news", "c# & go"]})).await;
    let slug = a.json["article"]["slug"].as_str().unwrap().to_string();
    let mut b = Browser::new(&app);

    let home = b.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(
        home.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        home.body.contains("Hello web")
            && home.body.contains("Popular tags")
            && home.body.contains("Sign in"),
        "{}",
        home.body
    );
    assert!(
        home.body.contains("<main id=\"main\"") && home.body.contains("aria-label=\"Main\""),
        "landmarks"
    );
    assert!(
        home.body.contains("href=\"/?tag=c%23%20%26%20go\""),
        "tag links are encoded"
    );
    let csp = home.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(home.headers["x-content-type-options"], "nosniff");
    assert!(b.cookie().is_none(), "browsing sets no cookie");

    let page = b.get(&format!("/article/{slug}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("<h1>Big news</h1>") && page.body.contains("<em>emphasis</em>"),
        "Markdown rendered: {}",
        page.body
    );
    assert!(
        page.body.contains("to add comments"),
        "anonymous visitors are invited to sign in"
    );

    let tagged = b.get("/?tag=c%23%20%26%20go").await;
    assert!(
        tagged.body.contains("Hello web") && tagged.body.contains("# c# &#38; go"),
        "{}",
        tagged.body
    );
    let none = b.get("/?tag=nothing").await;
    assert!(!none.body.contains("Hello web") && none.body.contains("No articles here yet"));

    let profile = b.get("/profile/alice").await;
    assert!(profile.body.contains("<h1>alice</h1>") && profile.body.contains("Hello web"));
    assert_eq!(b.get("/profile/nobody").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        b.get("/article/no-such-article-zz").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(b.get("/no/such/page").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn assets_have_hashed_names_are_cacheable_for_a_year_and_come_compressed() {
    let app = TestApp::spawn().await;
    let mut b = Browser::new(&app);
    let home = b.get("/").await;
    let client = reqwest::Client::new();
    for ext in ["css", "js", "svg"] {
        let at = home
            .body
            .find(&format!(".{ext}\""))
            .expect("the page links the asset");
        let start = home.body[..at]
            .rfind("\"/assets/")
            .expect("a local asset link")
            + 1;
        let href = &home.body[start..at + ext.len() + 1];
        let asset = b.get(href).await;
        assert_eq!(asset.status, StatusCode::OK, "{href}");
        assert_eq!(
            asset.headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(asset.headers["vary"], "Accept-Encoding");
        assert!(
            !asset.headers.contains_key("content-encoding"),
            "no Accept-Encoding, no encoding"
        );
        assert!(!asset.body.is_empty());
        let etag = asset.headers["etag"].clone();

        let again = client
            .get(app.url(href))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(
            again.status(),
            StatusCode::NOT_MODIFIED,
            "{href}: a matching ETag is 304"
        );
        for (accept, encoding) in [("gzip, deflate, br", "br"), ("gzip", "gzip")] {
            let res = client
                .get(app.url(href))
                .header("accept-encoding", accept)
                .send()
                .await
                .unwrap();
            assert_eq!(
                res.headers()["content-encoding"],
                encoding,
                "{href} with {accept}"
            );
            let len = res.bytes().await.unwrap().len();
            assert!(
                len > 0 && len < asset.body.len(),
                "{href}: {encoding} is smaller ({len} vs {})",
                asset.body.len()
            );
        }
    }
    assert_eq!(
        b.get("/assets/app.00000000.css").await.status,
        StatusCode::NOT_FOUND,
        "an old name is gone, not stale"
    );
}

#[tokio::test]
async fn anonymous_pages_may_be_cached_briefly_and_signed_in_pages_are_private() {
    let app = TestApp::spawn().await;
    let token = app.register("judy").await;
    let slug = app.article_slug(&token, "Cache me").await;
    let mut anon = Browser::new(&app);
    for path in [
        "/".to_string(),
        format!("/article/{slug}"),
        "/profile/judy".to_string(),
    ] {
        let p = anon.get(&path).await;
        assert_eq!(p.headers["cache-control"], "public, max-age=5", "{path}");
        assert_eq!(p.headers["vary"], "Cookie", "{path}");
    }
    let login = anon.get("/login").await;
    assert_eq!(
        login.headers["cache-control"], "private, no-cache",
        "a page with a form and a cookie is private"
    );
    let mut signed_in = Browser::new(&app);
    signed_in.sign_up("kim").await;
    for path in [
        "/".to_string(),
        format!("/article/{slug}"),
        "/profile/judy".to_string(),
        "/settings".to_string(),
    ] {
        assert_eq!(
            signed_in.get(&path).await.headers["cache-control"],
            "private, no-cache",
            "{path}"
        );
    }
}

#[tokio::test]
async fn signing_up_in_and_out_uses_an_http_only_session_cookie() {
    let app = TestApp::spawn().await;
    let mut b = Browser::new(&app);
    let form = b.get("/register").await;
    let set = form.headers["set-cookie"].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"),
        "{set}"
    );
    let before = b.cookie().unwrap().to_string();
    b.sign_up("bob").await;
    assert_ne!(
        b.cookie().unwrap(),
        before,
        "signing in issues a new session ID"
    );
    let home = b.get("/").await;
    assert!(
        home.body.contains("href=\"/profile/bob\"") && home.body.contains("Sign out"),
        "{}",
        home.body
    );

    let csrf = home.csrf();
    let out = b.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(b.cookie().is_none(), "the cookie is cleared");
    assert_eq!(
        b.get("/settings").await.location.as_deref(),
        Some("/login"),
        "signed out"
    );

    let csrf = b.csrf_from("/login").await;
    let wrong = sign_in_page(&mut b, "bob@example.com", "wrong-password", &csrf).await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        wrong.body.contains("email or password is invalid"),
        "{}",
        wrong.body
    );
    let csrf = wrong.csrf();
    let ok = sign_in_page(&mut b, "bob@example.com", "password123", &csrf).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert!(
        b.get("/settings")
            .await
            .body
            .contains("value=\"bob@example.com\"")
    );

    // a forged cookie is no session
    let mut forged = Browser::new(&app);
    forged.get("/login").await;
    let fake = format!("{}x", b.cookie().unwrap());
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = r
        .get(app.url("/settings"))
        .header("cookie", fake)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "a tampered cookie does not sign anyone in"
    );
}

#[tokio::test]
async fn forms_without_the_sessions_csrf_token_are_refused_with_403() {
    let app = TestApp::spawn().await;
    let mut b = Browser::new(&app);
    b.sign_up("carol").await;
    for token in ["", "not-the-token"] {
        let p = write_article(&mut b, "/editor", ["Forged", "d", "b", ""], token).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
        assert!(p.body.contains("Form expired"));
    }
    // another visitor's valid token is still not this session's
    let mut other = Browser::new(&app);
    let theirs = other.csrf_from("/login").await;
    let p = write_article(&mut b, "/editor", ["Forged", "d", "b", ""], &theirs).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/api/articles?author=carol", None).await.json["articlesCount"],
        0,
        "nothing was written"
    );
    let login = b
        .post(
            "/login",
            &[("email", "carol@example.com"), ("password", "password123")],
        )
        .await;
    assert_eq!(
        login.status,
        StatusCode::FORBIDDEN,
        "sign-in forms need the token too"
    );
}

#[tokio::test]
async fn a_signed_in_user_writes_edits_comments_favourites_follows_and_changes_settings() {
    let app = TestApp::spawn().await;
    let mut dave = Browser::new(&app);
    dave.sign_up("dave").await;
    let mut erin = Browser::new(&app);
    erin.sign_up("erin").await;

    // dave publishes
    let csrf = dave.csrf_from("/editor").await;
    let p = write_article(
        &mut dave,
        "/editor",
        [
            "Forms all the way",
            "no JS",
            "Plain **HTML** forms.",
            "web, forms",
        ],
        &csrf,
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let url = p.location.unwrap();
    let slug = url.strip_prefix("/article/").unwrap().to_string();
    let page = dave.get(&url).await;
    assert!(page.body.contains("<strong>HTML</strong>") && page.body.contains("Edit article"));
    assert!(
        dave.get("/?tag=forms")
            .await
            .body
            .contains("Forms all the way"),
        "the tag page lists it"
    );

    // and edits
    let edit = dave.get(&format!("/editor/{slug}")).await;
    assert!(
        edit.body.contains("value=\"Forms all the way\"")
            && edit.body.contains("value=\"forms web\""),
        "the form is filled in: {}",
        edit.body
    );
    let revised = ["Forms, revised", "no JS", "New body.", "web"];
    let p = write_article(&mut dave, &format!("/editor/{slug}"), revised, &edit.csrf()).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let url = p.location.unwrap();
    let slug = url.strip_prefix("/article/").unwrap().to_string();
    assert!(dave.get(&url).await.body.contains("Forms, revised"));

    // erin comments, favourites and follows
    let page = erin.get(&url).await;
    assert!(page.body.contains("Follow dave") && page.body.contains("Favorite"));
    let csrf = page.csrf();
    let c = erin
        .post(
            &format!("/article/{slug}/comments"),
            &[("body", "Nice one"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(c.status, StatusCode::SEE_OTHER);
    let f = erin
        .post(
            &format!("/article/{slug}/favorite"),
            &[("action", "add"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(f.status, StatusCode::SEE_OTHER);
    let fl = erin
        .post(
            "/profile/dave/follow",
            &[("action", "follow"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(fl.status, StatusCode::SEE_OTHER);
    let page = erin.get(&url).await;
    assert!(
        page.body.contains("Nice one")
            && page.body.contains("Unfollow dave")
            && page.body.contains("Unfavorite"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("Delete comment"),
        "erin may delete her own comment"
    );
    // on a sharded store, the follow back-fills erin's timeline through a job
    let started = std::time::Instant::now();
    while !erin.get("/?feed=1").await.body.contains("Forms, revised") {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "dave's article is in erin's feed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        erin.get("/profile/erin/favorites")
            .await
            .body
            .contains("Forms, revised")
    );

    // the script's way: JSON answers to the same forms
    let j = erin
        .post_json(
            &format!("/article/{slug}/favorite"),
            &[("action", "remove"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(j.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&j.body).unwrap();
    assert_eq!(v, json!({"favorited": false, "favoritesCount": 0}));
    let j = erin
        .post_json(
            "/profile/dave/follow",
            &[("action", "unfollow"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&j.body).unwrap(),
        json!({"following": false})
    );

    // dave sees the comment but may not delete it; erin deletes it
    let page = dave.get(&url).await;
    assert!(page.body.contains("Nice one") && !page.body.contains("Delete comment"));
    let id = page
        .body
        .split("class=\"comment\" id=\"comment-")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let refused = dave
        .post(
            &format!("/article/{slug}/comments/{id}/delete"),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let gone = erin
        .post(
            &format!("/article/{slug}/comments/{id}/delete"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER);
    assert!(!erin.get(&url).await.body.contains("Nice one"));

    // settings
    let s = erin.get("/settings").await;
    let p = erin
        .post(
            "/settings",
            &[
                ("image", "https://example.com/erin.png"),
                ("username", "erin2"),
                ("bio", "I test things"),
                ("email", "erin@example.com"),
                ("password", ""),
                ("csrf", &s.csrf()),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location.as_deref(), Some("/profile/erin2"));
    let profile = erin.get("/profile/erin2").await;
    assert!(
        profile.body.contains("I test things")
            && profile.body.contains("https://example.com/erin.png")
    );
    let bad = erin
        .post(
            "/settings",
            &[
                ("username", ""),
                ("email", "erin@example.com"),
                ("csrf", &s.csrf()),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.body.contains("username can&#39;t be blank"),
        "{}",
        bad.body
    );

    // dave deletes his article
    let page = dave.get(&url).await;
    let d = dave
        .post(
            &format!("/article/{slug}/delete"),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(d.status, StatusCode::SEE_OTHER);
    assert_eq!(dave.get(&url).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn nobody_edits_or_deletes_someone_elses_article() {
    let app = TestApp::spawn().await;
    let token = app.register("frank").await;
    let slug = app.article_slug(&token, "Frank's").await;
    let mut mallory = Browser::new(&app);
    mallory.sign_up("mallory").await;
    assert_eq!(
        mallory.get(&format!("/editor/{slug}")).await.status,
        StatusCode::FORBIDDEN
    );
    let csrf = mallory.csrf_from("/editor").await;
    let theft = ["Mine now", "d", "b", ""];
    let p = write_article(&mut mallory, &format!("/editor/{slug}"), theft, &csrf).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let p = mallory
        .post(&format!("/article/{slug}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get(&format!("/api/articles/{slug}"), None).await.json["article"]["title"],
        "Frank's"
    );
    let page = mallory.get(&format!("/article/{slug}")).await;
    assert!(!page.body.contains("Edit article") && !page.body.contains("Delete article"));
    // signed-out visitors are sent to sign in
    let mut anon = Browser::new(&app);
    assert_eq!(
        anon.get("/editor").await.location.as_deref(),
        Some("/login")
    );
}

#[tokio::test]
async fn script_in_titles_bodies_bios_and_comments_is_rendered_inert() {
    let app = TestApp::spawn().await;
    let payload = "<script>alert('x')</script><img src=x onerror=alert(1)>";
    let token = app.register("grace").await;
    app.put(
        "/api/user",
        Some(&token),
        json!({"user": {"bio": payload, "image": "javascript:alert(1)"}}),
    )
    .await;
    let a = post_article(&app, &token, json!({"title": format!("T {payload}"), "description": payload, "body": format!("text {payload} [a](javascript:alert(1)) ![i](data:image/svg+xml;base64,PHN2Zz4=)"), "tagList": ["<script>x</script>"]})).await;
    let slug = a.json["article"]["slug"].as_str().unwrap().to_string();
    app.post(
        &format!("/api/articles/{slug}/comments"),
        Some(&token),
        json!({"comment": {"body": payload}}),
    )
    .await;
    let mut b = Browser::new(&app);
    for path in [
        "/".to_string(),
        format!("/article/{slug}"),
        "/profile/grace".to_string(),
    ] {
        let page = b.get(&path).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            !page.body.contains("<script>alert"),
            "{path}: raw script tag"
        );
        assert!(
            !page.body.contains("<img src=x onerror"),
            "{path}: raw event handler"
        );
        assert!(
            !page.body.contains("href=\"javascript:"),
            "{path}: script URL"
        );
        assert!(
            !page.body.contains("src=\"javascript:") && !page.body.contains("src=\"data:"),
            "{path}: picture URLs are web URLs only"
        );
        assert!(
            page.body.contains("&#60;script&#62;") || page.body.contains("&lt;script&gt;"),
            "{path}: the text is shown, escaped"
        );
    }
}

#[tokio::test]
async fn repeated_failed_sign_ins_are_limited_per_account_with_a_clear_message() {
    let app = TestApp::spawn().await;
    app.register("heidi").await;
    let mut b = Browser::new(&app);
    let mut csrf = b.csrf_from("/login").await;
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let p = sign_in_page(&mut b, "heidi@example.com", "not-her-password", &csrf).await;
        statuses.push(p.status);
        csrf = p.csrf();
        if p.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(p.body.contains("too many sign-in attempts"), "{}", p.body);
        }
    }
    assert!(
        statuses[..10]
            .iter()
            .all(|s| *s == StatusCode::UNPROCESSABLE_ENTITY),
        "{statuses:?}"
    );
    assert_eq!(statuses[10], StatusCode::TOO_MANY_REQUESTS);
    // even the right password waits: the limit is per account and client
    let p = sign_in_page(&mut b, "heidi@example.com", "password123", &csrf).await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS);
    // and the API, from the same client, is under the same throttle
    let api = app
        .post(
            "/api/users/login",
            None,
            json!({"user": {"email": "heidi@example.com", "password": "password123"}}),
        )
        .await;
    assert_eq!(api.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_sign_up_form_shows_what_is_wrong_and_keeps_what_was_typed() {
    let app = TestApp::spawn().await;
    app.register("ivan").await;
    let mut b = Browser::new(&app);
    let csrf = b.csrf_from("/register").await;
    let p = b
        .post(
            "/register",
            &[
                ("username", "ivan"),
                ("email", "new@example.com"),
                ("password", "password123"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.body.contains("username has already been taken"),
        "{}",
        p.body
    );
    assert!(
        p.body.contains("value=\"new@example.com\""),
        "the email is kept"
    );
    let p = b
        .post(
            "/register",
            &[
                ("username", ""),
                ("email", "x"),
                ("password", "short"),
                ("csrf", &p.csrf()),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("role=\"alert\""), "errors are announced");
}
