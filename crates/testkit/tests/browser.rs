//! End to end in a real browser (headless Chromium through chromedriver): a visitor signs
//! up, writes an article with tags, finds it on the home and tag pages, comments, follows
//! and favourites (in place, through the page's script), edits settings and signs out.

use crescendo_testkit::TestApp;
use crescendo_testkit::webdriver::Driver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_does_everything_the_site_offers_in_a_browser() {
    let app = TestApp::spawn().await;
    // someone to follow, with an article to favourite
    let token = app.register("writer").await;
    let theirs = app
        .create_article(&token, "Written elsewhere", &["other"])
        .await;
    let their_slug = theirs["slug"].as_str().unwrap().to_string();

    let driver = Driver::start().await;
    let tab = driver.open().await;
    let site = app.url("");

    // sign up
    tab.goto(&format!("{site}/register")).await;
    tab.fill("#username", "browser").await;
    tab.fill("#email", "browser@example.com").await;
    tab.fill("#password", "password123").await;
    tab.click("main form button[type=submit]").await;
    tab.find("nav a[href='/profile/browser']").await;
    assert_eq!(tab.url().await, format!("{site}/"));

    // write an article with tags
    tab.click("nav a[href='/editor']").await;
    tab.fill("#title", "Seen in a browser").await;
    tab.fill("#description", "end to end").await;
    tab.fill("#body", "Hello from **Chromium**.").await;
    tab.fill("#tags", "e2e browsers").await;
    tab.click("main form button[type=submit]").await;
    // the editor has an h1 too: wait for the article's page before reading it
    assert_eq!(tab.text(".body strong").await, "Chromium");
    assert_eq!(tab.text("h1").await, "Seen in a browser");

    // it is on the home page and on its tag's page
    tab.goto(&format!("{site}/")).await;
    assert!(tab.source().await.contains("Seen in a browser"));
    tab.click("a[href='/?tag=e2e']").await;
    tab.find("nav.tabs a[aria-current='page'][href='/?tag=e2e']")
        .await;
    assert!(tab.source().await.contains("Seen in a browser"));

    // comment on it
    tab.click("article.card h2 a").await;
    tab.fill("#comment-body", "First!").await;
    tab.click("#comments form button[type=submit]").await;
    assert_eq!(tab.text("article.comment p").await, "First!");

    // follow the other writer and favourite their article, in place: no page load
    tab.goto(&format!("{site}/article/{their_slug}")).await;
    tab.wait_until(
        "the page's script is loaded",
        "return window.crescendoEnhanced === true",
    )
    .await;
    tab.run("window.stillHere = true; window.errors = []; window.addEventListener('error', e => window.errors.push(e.message)); return true").await;
    // a fallback to a plain submit would reload the page: record it instead
    tab.run(
        "HTMLFormElement.prototype.submit = function () { window.fellBack = true; }; return true",
    )
    .await;
    tab.click("form[data-enhance='follow'] button").await;
    tab.wait_until("the follow button turns", "return document.querySelector(\"form[data-enhance='follow'] button\").getAttribute('aria-pressed') === 'true'").await;
    tab.click("form[data-enhance='favorite'] button").await;
    tab.wait_until("the favourite count rises", "return document.querySelector(\"form[data-enhance='favorite'] .count\").textContent === '1'").await;
    let errors = tab.run("return window.errors || 'reloaded'").await;
    assert_eq!(
        tab.run("return window.stillHere === true && !window.fellBack")
            .await,
        serde_json::json!(true),
        "updated in place: {errors}"
    );
    assert!(
        tab.text("form[data-enhance='follow'] button")
            .await
            .starts_with("Unfollow")
    );
    let api = app.get(&format!("/api/articles/{their_slug}"), None).await;
    assert_eq!(
        api.json["article"]["favoritesCount"], 1,
        "the favourite was saved"
    );
    tab.goto(&format!("{site}/?feed=1")).await;
    assert!(
        tab.source().await.contains("Written elsewhere"),
        "the followed writer is in my feed"
    );

    // settings
    tab.click("nav a[href='/settings']").await;
    tab.fill("#bio", "I run in a headless browser").await;
    tab.click("main form button[type=submit]").await;
    tab.wait_until(
        "the profile page",
        "return location.pathname === '/profile/browser' && document.readyState === 'complete'",
    )
    .await;
    assert!(tab.source().await.contains("I run in a headless browser"));

    // sign out
    tab.click("nav form[action='/logout'] button").await;
    tab.find("nav a[href='/login']").await;
    assert!(!tab.source().await.contains("href=\"/settings\""));
    tab.close().await;
}
