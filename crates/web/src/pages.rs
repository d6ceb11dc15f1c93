//! Page handlers: each loads the session, calls the application, and renders a template or
//! redirects (303) after a successful form.

use crate::Web;
use crate::session::Session;
use crate::views::{self, Card, PageLink, Person, Remark, TagLink, urlencode};
use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Multipart, Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use crescendo_app::{AppError, ArticleInput, ListQuery, SignInAttempt, UserChangesInput};
use crescendo_domain::{CommentId, Id};
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use std::convert::Infallible;
use std::net::SocketAddr;

const PER_PAGE: u32 = 10;

impl FromRequestParts<Web> for Session {
    type Rejection = Infallible;
    async fn from_request_parts(parts: &mut Parts, w: &Web) -> Result<Self, Infallible> {
        let s = Session::load(&w.app, &w.keys, &parts.headers).await;
        if let Some(user) = s.user {
            w.app.act_as(user).await;
        }
        Ok(s)
    }
}

/// Security headers on every page. A page is `private` unless its handler made it public
/// (anonymous views without forms); every page varies by cookie.
pub(crate) async fn page_headers(State(w): State<Web>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let assets = w
        .assets
        .origin()
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    let csp = format!(
        "default-src 'self'; img-src 'self' https: http:{assets}; style-src 'self'{assets}; script-src 'self'{assets}; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_str(&csp).expect("ASCII policy"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("private, no-cache"));
    h.insert(http::header::VARY, HeaderValue::from_static("Cookie"));
    res
}

/// What the layout needs.
pub(crate) struct Chrome {
    title: String,
    user: Option<String>,
    csrf: String,
    css: String,
    js: String,
    icon: String,
    /// Which navigation link is the current page.
    here: &'static str,
}

async fn chrome(w: &Web, s: &Session, title: impl Into<String>, here: &'static str) -> Chrome {
    let user = match s.user {
        Some(id) => w
            .app
            .profile_by_id(id)
            .await
            .ok()
            .flatten()
            .map(|p| p.username.clone()),
        None => None,
    };
    Chrome {
        title: title.into(),
        user,
        csrf: s.csrf.clone(),
        css: w.assets.css_href(),
        js: w.assets.js_href(),
        icon: w.assets.icon_href(),
        here,
    }
}

fn html(s: &Session, status: StatusCode, body: Result<String, askama::Error>) -> Response {
    match body {
        Ok(body) => {
            let mut res =
                (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
            s.apply(res.headers_mut());
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// Lets shared caches (a CDN) keep an anonymous page for a few seconds: only pages that
/// show no form and set no cookie, for a visitor who is not signed in.
const PUBLIC_PAGE: &str = "public, max-age=5";

fn public_if_anonymous(s: &Session, mut res: Response) -> Response {
    if s.user.is_none() && s.set_cookie.is_none() && res.status() == StatusCode::OK {
        res.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static(PUBLIC_PAGE));
    }
    res
}

fn redirect(s: &Session, to: &str) -> Response {
    let mut res = (
        StatusCode::SEE_OTHER,
        [(
            LOCATION,
            HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
        )],
    )
        .into_response();
    s.apply(res.headers_mut());
    res
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    heading: String,
    message: String,
}

async fn error_page(
    w: &Web,
    s: &Session,
    status: StatusCode,
    heading: &str,
    message: &str,
) -> Response {
    let page = ErrorPage {
        chrome: chrome(w, s, heading, "").await,
        heading: heading.into(),
        message: message.into(),
    };
    html(s, status, page.render())
}

/// A page for an application error that no form shows inline.
async fn failed(w: &Web, s: &Session, e: AppError) -> Response {
    match e {
        AppError::Unauthorized => redirect(s, "/login"),
        AppError::Forbidden => {
            error_page(
                w,
                s,
                StatusCode::FORBIDDEN,
                "Not yours",
                "Only its author can change or delete this.",
            )
            .await
        }
        AppError::NotFound(what) => {
            error_page(
                w,
                s,
                StatusCode::NOT_FOUND,
                "Not found",
                &format!("There is no such {what}."),
            )
            .await
        }
        AppError::Validation(_) | AppError::Conflict { .. } => {
            error_page(
                w,
                s,
                StatusCode::UNPROCESSABLE_ENTITY,
                "That did not work",
                &problems(&e).join(" "),
            )
            .await
        }
        AppError::UnsupportedMedia(why) => {
            error_page(
                w,
                s,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Not an image we take",
                &why,
            )
            .await
        }
        AppError::Unavailable => {
            error_page(
                w,
                s,
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again in a moment",
                "Part of the service is unavailable.",
            )
            .await
        }
        AppError::Internal(cause) => {
            tracing::error!(error = %cause, "page failed");
            error_page(
                w,
                s,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The error has been logged.",
            )
            .await
        }
    }
}

/// Messages for a form: one per field problem.
fn problems(e: &AppError) -> Vec<String> {
    match e {
        AppError::Validation(errs) => errs
            .0
            .iter()
            .map(|f| format!("{} {}", f.field, f.problem))
            .collect(),
        AppError::Conflict { field } => vec![format!("{field} has already been taken")],
        AppError::Unauthorized => vec!["email or password is invalid".into()],
        other => vec![other.to_string()],
    }
}

async fn csrf_refused(w: &Web, s: &Session) -> Response {
    error_page(
        w,
        s,
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form has expired or did not come from this site. Go back, reload the page and try again.",
    )
    .await
}

/// The signed-in user, or a redirect to the sign-in page.
macro_rules! signed_in {
    ($s:expr) => {
        match $s.user {
            Some(u) => u,
            None => return redirect(&$s, "/login"),
        }
    };
}

/// Checks a form's CSRF token, or refuses the request with 403.
macro_rules! check_csrf {
    ($w:expr, $s:expr, $token:expr) => {
        if !$s.csrf_ok(&$token) {
            return csrf_refused(&$w, &$s).await;
        }
    };
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

// --- home ---

#[derive(Deserialize, Default)]
pub(crate) struct HomeQuery {
    feed: Option<String>,
    tag: Option<String>,
    page: Option<u32>,
}

#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    chrome: Chrome,
    tab: &'static str,
    tag: TagLink,
    cards: Vec<Card>,
    pages: Vec<PageLink>,
    tags: Vec<TagLink>,
}

pub(crate) async fn home(State(w): State<Web>, s: Session, Query(q): Query<HomeQuery>) -> Response {
    let page = q.page.unwrap_or(1).clamp(1, 1000);
    let offset = (page - 1) * PER_PAGE;
    let tag = q.tag.filter(|t| !t.is_empty());
    let (tab, listed) = match (&tag, q.feed.is_some(), s.user) {
        (Some(t), _, _) => (
            "tag",
            w.app
                .list_articles(
                    s.user,
                    ListQuery {
                        tag: Some(t.clone()),
                        limit: PER_PAGE,
                        offset,
                        ..Default::default()
                    },
                )
                .await,
        ),
        (None, true, Some(u)) => ("feed", w.app.feed(u, PER_PAGE, offset).await),
        (None, true, None) => return redirect(&s, "/login"),
        (None, false, _) => (
            "global",
            w.app
                .list_articles(
                    s.user,
                    ListQuery {
                        limit: PER_PAGE,
                        offset,
                        ..Default::default()
                    },
                )
                .await,
        ),
    };
    let (articles, total) = match listed {
        Ok(l) => l,
        Err(e) => return failed(&w, &s, e).await,
    };
    let tags = w
        .app
        .tags()
        .await
        .map(|t| t.iter().take(20).map(|t| TagLink::new(t)).collect())
        .unwrap_or_default();
    let tag_str = tag.clone().unwrap_or_default();
    let pages = views::pager(total, PER_PAGE, page, |n| match tab {
        "tag" => format!("/?tag={}&page={n}", urlencode(&tag_str)),
        "feed" => format!("/?feed=1&page={n}"),
        _ => format!("/?page={n}"),
    });
    let t = Home {
        chrome: chrome(&w, &s, "Home", "home").await,
        tab,
        tag: TagLink::new(&tag_str),
        cards: articles.iter().map(Card::from).collect(),
        pages,
        tags,
    };
    public_if_anonymous(&s, html(&s, StatusCode::OK, t.render()))
}

// --- sign in, sign up, sign out ---

#[derive(Template)]
#[template(path = "auth.html")]
struct Auth {
    chrome: Chrome,
    register: bool,
    errors: Vec<String>,
    username: String,
    email: String,
}

async fn auth_page(
    w: &Web,
    mut s: Session,
    register: bool,
    status: StatusCode,
    errors: Vec<String>,
    username: String,
    email: String,
) -> Response {
    if let Err(e) = s.ensure(&w.app, &w.keys).await {
        tracing::warn!(error = %e, "cannot start a session");
        return error_page(
            w,
            &s,
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again in a moment",
            "Sessions are unavailable.",
        )
        .await;
    }
    let (title, here) = if register {
        ("Sign up", "register")
    } else {
        ("Sign in", "login")
    };
    let t = Auth {
        chrome: chrome(w, &s, title, here).await,
        register,
        errors,
        username,
        email,
    };
    html(&s, status, t.render())
}

pub(crate) async fn login_form(State(w): State<Web>, s: Session) -> Response {
    auth_page(
        &w,
        s,
        false,
        StatusCode::OK,
        Vec::new(),
        String::new(),
        String::new(),
    )
    .await
}

pub(crate) async fn register_form(State(w): State<Web>, s: Session) -> Response {
    auth_page(
        &w,
        s,
        true,
        StatusCode::OK,
        Vec::new(),
        String::new(),
        String::new(),
    )
    .await
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

/// The client's address: the peer of the connection.
fn client(peer: Option<&ConnectInfo<SocketAddr>>) -> String {
    peer.map_or_else(|| "unknown".into(), |c| c.0.ip().to_string())
}

pub(crate) async fn login(
    State(w): State<Web>,
    mut s: Session,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    Form(f): Form<LoginForm>,
) -> Response {
    check_csrf!(w, s, f.csrf);
    let address = client(peer.as_deref());
    match w.app.count_sign_in_attempt(&f.email, &address).await {
        Ok(SignInAttempt::Allowed) => {}
        Ok(SignInAttempt::TooMany) => {
            let msg = "too many sign-in attempts: wait 15 minutes, then try again".to_string();
            return auth_page(
                &w,
                s,
                false,
                StatusCode::TOO_MANY_REQUESTS,
                vec![msg],
                String::new(),
                f.email,
            )
            .await;
        }
        // the cause is logged by the app
        Err(_) => {
            return error_page(
                &w,
                &s,
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again in a moment",
                "Sign-in is unavailable.",
            )
            .await;
        }
    }
    match w.app.login(&f.email, &f.password).await {
        Ok(user) => match s.start(&w.app, &w.keys, Some(user.id)).await {
            Ok(()) => redirect(&s, "/"),
            Err(_) => {
                error_page(
                    &w,
                    &s,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Try again in a moment",
                    "Sessions are unavailable.",
                )
                .await
            }
        },
        Err(e @ (AppError::Unauthorized | AppError::Validation(_))) => {
            auth_page(
                &w,
                s,
                false,
                StatusCode::UNPROCESSABLE_ENTITY,
                problems(&e),
                String::new(),
                f.email,
            )
            .await
        }
        Err(e) => failed(&w, &s, e).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct RegisterForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn register(
    State(w): State<Web>,
    mut s: Session,
    Form(f): Form<RegisterForm>,
) -> Response {
    check_csrf!(w, s, f.csrf);
    match w.app.register(&f.username, &f.email, &f.password).await {
        Ok(user) => match s.start(&w.app, &w.keys, Some(user.id)).await {
            Ok(()) => redirect(&s, "/"),
            Err(_) => {
                error_page(
                    &w,
                    &s,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Try again in a moment",
                    "Sessions are unavailable.",
                )
                .await
            }
        },
        Err(e @ (AppError::Validation(_) | AppError::Conflict { .. })) => {
            auth_page(
                &w,
                s,
                true,
                StatusCode::UNPROCESSABLE_ENTITY,
                problems(&e),
                f.username,
                f.email,
            )
            .await
        }
        Err(e) => failed(&w, &s, e).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct TokenForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn logout(
    State(w): State<Web>,
    mut s: Session,
    Form(f): Form<TokenForm>,
) -> Response {
    check_csrf!(w, s, f.csrf);
    let _ = s.end(&w.app, &w.keys).await;
    redirect(&s, "/")
}

// --- settings ---

#[derive(Template)]
#[template(path = "settings.html")]
struct Settings {
    chrome: Chrome,
    errors: Vec<String>,
    image: String,
    username: String,
    bio: String,
    email: String,
}

pub(crate) async fn settings_form(State(w): State<Web>, s: Session) -> Response {
    let user = signed_in!(s);
    match w.app.current_user(user).await {
        Ok(u) => {
            let t = Settings {
                chrome: chrome(&w, &s, "Settings", "settings").await,
                errors: Vec::new(),
                image: u.image,
                username: u.username,
                bio: u.bio,
                email: u.email,
            };
            html(&s, StatusCode::OK, t.render())
        }
        Err(e) => failed(&w, &s, e).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct SettingsForm {
    #[serde(default)]
    image: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    bio: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn settings(
    State(w): State<Web>,
    s: Session,
    Form(f): Form<SettingsForm>,
) -> Response {
    let user = signed_in!(s);
    check_csrf!(w, s, f.csrf);
    let input = UserChangesInput {
        email: Some(f.email.clone()),
        username: Some(f.username.clone()),
        password: Some(f.password.clone()).filter(|p| !p.is_empty()),
        bio: Some(f.bio.clone()),
        image: Some(f.image.clone()),
    };
    match w.app.update_user(user, input).await {
        Ok(u) => redirect(&s, &format!("/profile/{}", urlencode(&u.username))),
        Err(e @ (AppError::Validation(_) | AppError::Conflict { .. })) => {
            let t = Settings {
                chrome: chrome(&w, &s, "Settings", "settings").await,
                errors: problems(&e),
                image: f.image,
                username: f.username,
                bio: f.bio,
                email: f.email,
            };
            html(&s, StatusCode::UNPROCESSABLE_ENTITY, t.render())
        }
        Err(e) => failed(&w, &s, e).await,
    }
}

// --- image uploads from the pages ---

/// A multipart form with a CSRF token and one image: `(csrf, file bytes)`.
async fn image_form(mut form: Multipart) -> Result<(String, Option<bytes::Bytes>), AppError> {
    let (mut csrf, mut file) = (String::new(), None);
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(AppError::invalid("file", "is too large"));
            }
            Err(e) => return Err(AppError::invalid("file", e.body_text())),
        };
        match field.name() {
            Some("csrf") => csrf = field.text().await.unwrap_or_default(),
            Some("file") => {
                let bytes = field.bytes().await.map_err(|e| {
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        AppError::invalid("file", "is too large")
                    } else {
                        AppError::invalid("file", e.body_text())
                    }
                })?;
                file = Some(bytes).filter(|b| !b.is_empty());
            }
            _ => {}
        }
    }
    Ok((csrf, file))
}

/// Turns an upload error into a page: what was wrong, and a way back.
async fn upload_failed(w: &Web, s: &Session, e: AppError) -> Response {
    match e {
        AppError::Validation(_) => {
            error_page(
                w,
                s,
                StatusCode::UNPROCESSABLE_ENTITY,
                "That image did not work",
                &problems(&e).join(" "),
            )
            .await
        }
        other => failed(w, s, other).await,
    }
}

/// The upload a page's image form sends (signed in, CSRF checked), or the page to answer.
async fn take_upload(
    w: &Web,
    s: &Session,
    user: Id,
    form: Multipart,
) -> Result<crescendo_app::UploadView, Response> {
    let (csrf, file) = match image_form(form).await {
        Ok(f) => f,
        Err(e) => return Err(upload_failed(w, s, e).await),
    };
    if !s.csrf_ok(&csrf) {
        return Err(csrf_refused(w, s).await);
    }
    let Some(file) = file else {
        return Err(upload_failed(
            w,
            s,
            AppError::invalid("file", "is missing: choose an image"),
        )
        .await);
    };
    match w.app.create_upload(user, file).await {
        Ok(u) => Ok(u),
        Err(e) => Err(upload_failed(w, s, e).await),
    }
}

/// `POST /settings/picture`: uploads an image and makes its 320 px variant the user's picture.
pub(crate) async fn upload_picture(State(w): State<Web>, s: Session, form: Multipart) -> Response {
    let user = signed_in!(s);
    let up = match take_upload(&w, &s, user, form).await {
        Ok(u) => u,
        Err(page) => return page,
    };
    let input = UserChangesInput {
        image: Some(up.variant(320)),
        ..Default::default()
    };
    match w.app.update_user(user, input).await {
        Ok(_) => redirect(&s, "/settings"),
        Err(e) => upload_failed(&w, &s, e).await,
    }
}

/// `POST /article/{slug}/cover`: uploads an image and makes its 1280 px variant the cover.
pub(crate) async fn upload_cover(
    State(w): State<Web>,
    s: Session,
    Path(slug): Path<String>,
    form: Multipart,
) -> Response {
    let user = signed_in!(s);
    let up = match take_upload(&w, &s, user, form).await {
        Ok(u) => u,
        Err(page) => return page,
    };
    let input = ArticleInput {
        cover_image: Some(up.variant(1280)),
        ..Default::default()
    };
    match w.app.update_article(user, &slug, input).await {
        Ok(a) => redirect(&s, &format!("/article/{}", a.article.slug)),
        Err(e) => upload_failed(&w, &s, e).await,
    }
}

// --- editor ---

#[derive(Template)]
#[template(path = "editor.html")]
struct Editor {
    chrome: Chrome,
    errors: Vec<String>,
    /// Where the form posts.
    action: String,
    title: String,
    description: String,
    body: String,
    tags: String,
    cover: String,
}

#[derive(Deserialize)]
pub(crate) struct ArticleForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    cover: String,
    #[serde(default)]
    csrf: String,
}

impl ArticleForm {
    fn input(&self) -> ArticleInput {
        ArticleInput {
            title: Some(self.title.clone()),
            description: Some(self.description.clone()),
            body: Some(self.body.clone()),
            tags: Some(views::split_tags(&self.tags)),
            cover_image: Some(self.cover.clone()),
        }
    }
}

async fn editor_page(
    w: &Web,
    s: &Session,
    status: StatusCode,
    action: String,
    f: ArticleForm,
    errors: Vec<String>,
) -> Response {
    let t = Editor {
        chrome: chrome(w, s, "Editor", "editor").await,
        errors,
        action,
        title: f.title,
        description: f.description,
        body: f.body,
        tags: f.tags,
        cover: f.cover,
    };
    html(s, status, t.render())
}

pub(crate) async fn new_article_form(State(w): State<Web>, s: Session) -> Response {
    signed_in!(s);
    let empty = ArticleForm {
        title: String::new(),
        description: String::new(),
        body: String::new(),
        tags: String::new(),
        cover: String::new(),
        csrf: String::new(),
    };
    editor_page(&w, &s, StatusCode::OK, "/editor".into(), empty, Vec::new()).await
}

pub(crate) async fn create_article(
    State(w): State<Web>,
    s: Session,
    Form(f): Form<ArticleForm>,
) -> Response {
    let user = signed_in!(s);
    check_csrf!(w, s, f.csrf);
    match w.app.create_article(user, f.input()).await {
        Ok(a) => redirect(&s, &format!("/article/{}", a.article.slug)),
        Err(e @ AppError::Validation(_)) => {
            editor_page(
                &w,
                &s,
                StatusCode::UNPROCESSABLE_ENTITY,
                "/editor".into(),
                f,
                problems(&e),
            )
            .await
        }
        Err(e) => failed(&w, &s, e).await,
    }
}

pub(crate) async fn edit_article_form(
    State(w): State<Web>,
    s: Session,
    Path(slug): Path<String>,
) -> Response {
    let user = signed_in!(s);
    let a = match w.app.article(Some(user), &slug).await {
        Ok(a) => a,
        Err(e) => return failed(&w, &s, e).await,
    };
    if a.article.author_id != user {
        return failed(&w, &s, AppError::Forbidden).await;
    }
    let f = ArticleForm {
        title: a.article.title.clone(),
        description: a.article.description.clone(),
        body: a.article.body.clone(),
        tags: a.article.tags.join(" "),
        cover: a.article.cover_image.clone(),
        csrf: String::new(),
    };
    editor_page(
        &w,
        &s,
        StatusCode::OK,
        format!("/editor/{}", a.article.slug),
        f,
        Vec::new(),
    )
    .await
}

pub(crate) async fn update_article(
    State(w): State<Web>,
    s: Session,
    Path(slug): Path<String>,
    Form(f): Form<ArticleForm>,
) -> Response {
    let user = signed_in!(s);
    check_csrf!(w, s, f.csrf);
    match w.app.update_article(user, &slug, f.input()).await {
        Ok(a) => redirect(&s, &format!("/article/{}", a.article.slug)),
        Err(e @ AppError::Validation(_)) => {
            editor_page(
                &w,
                &s,
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("/editor/{slug}"),
                f,
                problems(&e),
            )
            .await
        }
        Err(e) => failed(&w, &s, e).await,
    }
}

// --- an article ---

#[derive(Template)]
#[template(path = "article.html")]
struct ArticlePage {
    chrome: Chrome,
    card: Card,
    body_html: String,
    author: Person,
    mine: bool,
    comments: Vec<Remark>,
}

pub(crate) async fn article(
    State(w): State<Web>,
    mut s: Session,
    Path(slug): Path<String>,
) -> Response {
    let a = match w.app.article(s.user, &slug).await {
        Ok(a) => a,
        Err(e) => return failed(&w, &s, e).await,
    };
    let comments = match w.app.comments(s.user, &slug).await {
        Ok(c) => c,
        Err(e) => return failed(&w, &s, e).await,
    };
    if s.user.is_some() {
        let _ = s.ensure(&w.app, &w.keys).await;
    }
    let chrome = chrome(&w, &s, a.article.title.clone(), "").await;
    let viewer = chrome.user.clone();
    let t = ArticlePage {
        card: Card::from(&a),
        body_html: views::markdown(&a.article.body),
        author: Person::from(&a.author),
        mine: s.user == Some(a.article.author_id),
        comments: comments
            .iter()
            .map(|c| Remark::new(c, viewer.as_deref()))
            .collect(),
        chrome,
    };
    public_if_anonymous(&s, html(&s, StatusCode::OK, t.render()))
}

pub(crate) async fn delete_article(
    State(w): State<Web>,
    s: Session,
    Path(slug): Path<String>,
    Form(f): Form<TokenForm>,
) -> Response {
    let user = signed_in!(s);
    check_csrf!(w, s, f.csrf);
    match w.app.delete_article(user, &slug).await {
        Ok(()) => redirect(&s, "/"),
        Err(e) => failed(&w, &s, e).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct ToggleForm {
    #[serde(default)]
    action: String,
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn favorite(
    State(w): State<Web>,
    s: Session,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Form(f): Form<ToggleForm>,
) -> Response {
    let user = signed_in!(s);
    check_csrf!(w, s, f.csrf);
    let done = if f.action == "remove" {
        w.app.unfavorite(user, &slug).await
    } else {
        w.app.favorite(user, &slug).await
    };
    match done {
        Ok(a) if wants_json(&headers) => {
            axum::Json(serde_json::json!({"favorited": a.favorited, "favoritesCount": a.article.favorites_count})).into_response()
        }
        Ok(a) => redirect(&s, &format!("/article/{}", a.article.slug)),
        Err(e) => failed(&w, &s, e).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct CommentForm {
    #[serde(default)]
    body: String,
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn add_comment(
    State(w): State<Web>,
    s: Session,
    Path(slug): Path<String>,
    Form(f): Form<CommentForm>,
) -> Response {
    let user = signed_in!(s);
    check_csrf!(w, s, f.csrf);
    match w.app.add_comment(user, &slug, Some(&f.body)).await {
        Ok(c) => redirect(
            &s,
            &format!("/article/{slug}#comment-{}", c.comment.id.as_i64()),
        ),
        Err(e) => failed(&w, &s, e).await,
    }
}

pub(crate) async fn delete_comment(
    State(w): State<Web>,
    s: Session,
    Path((slug, id)): Path<(String, String)>,
    Form(f): Form<TokenForm>,
) -> Response {
    let user = signed_in!(s);
    check_csrf!(w, s, f.csrf);
    let Some(id) = id
        .parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .map(CommentId::from_i64)
    else {
        return failed(&w, &s, AppError::NotFound("comment")).await;
    };
    match w.app.delete_comment(user, &slug, id).await {
        Ok(()) => redirect(&s, &format!("/article/{slug}#comments")),
        Err(e) => failed(&w, &s, e).await,
    }
}

// --- profiles ---

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage {
    chrome: Chrome,
    person: Person,
    me: bool,
    favorites: bool,
    cards: Vec<Card>,
    pages: Vec<PageLink>,
}

#[derive(Deserialize, Default)]
pub(crate) struct PageQuery {
    page: Option<u32>,
}

async fn profile_page(
    w: &Web,
    mut s: Session,
    username: &str,
    favorites: bool,
    page: u32,
) -> Response {
    let p = match w.app.profile(s.user, username).await {
        Ok(p) => p,
        Err(e) => return failed(w, &s, e).await,
    };
    let page = page.clamp(1, 1000);
    let q = ListQuery {
        author: (!favorites).then(|| p.profile.username.clone()),
        favorited: favorites.then(|| p.profile.username.clone()),
        limit: PER_PAGE,
        offset: (page - 1) * PER_PAGE,
        ..Default::default()
    };
    let (articles, total) = match w.app.list_articles(s.user, q).await {
        Ok(l) => l,
        Err(e) => return failed(w, &s, e).await,
    };
    if s.user.is_some() {
        let _ = s.ensure(&w.app, &w.keys).await;
    }
    let base = format!(
        "/profile/{}{}",
        urlencode(&p.profile.username),
        if favorites { "/favorites" } else { "" }
    );
    let t = ProfilePage {
        chrome: chrome(w, &s, p.profile.username.clone(), "").await,
        me: s.user == Some(p.profile.id),
        person: Person::from(&p),
        favorites,
        cards: articles.iter().map(Card::from).collect(),
        pages: views::pager(total, PER_PAGE, page, |n| format!("{base}?page={n}")),
    };
    public_if_anonymous(&s, html(&s, StatusCode::OK, t.render()))
}

pub(crate) async fn profile(
    State(w): State<Web>,
    s: Session,
    Path(username): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    profile_page(&w, s, &username, false, q.page.unwrap_or(1)).await
}

pub(crate) async fn profile_favorites(
    State(w): State<Web>,
    s: Session,
    Path(username): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    profile_page(&w, s, &username, true, q.page.unwrap_or(1)).await
}

pub(crate) async fn follow(
    State(w): State<Web>,
    s: Session,
    headers: HeaderMap,
    Path(username): Path<String>,
    Form(f): Form<ToggleForm>,
) -> Response {
    let user: Id = signed_in!(s);
    check_csrf!(w, s, f.csrf);
    let done = if f.action == "unfollow" {
        w.app.unfollow(user, &username).await
    } else {
        w.app.follow(user, &username).await
    };
    match done {
        Ok(p) if wants_json(&headers) => {
            axum::Json(serde_json::json!({"following": p.following})).into_response()
        }
        Ok(p) => redirect(&s, &format!("/profile/{}", urlencode(&p.profile.username))),
        Err(e) => failed(&w, &s, e).await,
    }
}
