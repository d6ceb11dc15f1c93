//! Uploads: an image is taken at once, its variants appear, and hostile files are refused
//! or cleaned while the worker keeps running.

use crate::articles::post_article;
use crate::web::write_article;
use crescendo_testkit::{Answer, Browser, TestApp};
use image::{GenericImageView, ImageFormat};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::Cursor;
use std::time::{Duration, Instant};

/// A multipart body with one field (no multipart support needed in the client).
pub(crate) fn multipart(
    field: &str,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
) -> (String, Vec<u8>) {
    let boundary = "crescendo-test-boundary-7d3a";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub(crate) async fn upload(
    app: &TestApp,
    token: Option<&str>,
    field: &str,
    name: &str,
    bytes: &[u8],
) -> (StatusCode, Value) {
    let (ct, body) = multipart(field, name, "image/png", bytes);
    let r = app
        .request(reqwest::Method::POST, "/api/uploads", token)
        .header("content-type", ct)
        .body(body);
    let a = TestApp::answer(r.send().await.unwrap()).await;
    (a.status, a.json)
}

pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 7 % 256) as u8, (y * 3 % 256) as u8, 90])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    out
}

/// A small PNG whose header claims 30,000 × 30,000 pixels (a decompression bomb).
fn png_bomb() -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = 30_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&30_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    out.extend(chunk(b"IHDR", &ihdr));
    out.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    out.extend(chunk(b"IEND", &[]));
    out
}

/// A 40 × 20 JPEG with EXIF: orientation 6 (shown turned a quarter clockwise) and a GPS
/// position.
fn jpeg_with_exif_gps() -> Vec<u8> {
    let img = image::RgbImage::from_fn(40, 20, |x, _| {
        if x < 20 {
            image::Rgb([250, 0, 0])
        } else {
            image::Rgb([0, 0, 250])
        }
    });
    let mut plain = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 90)
        .encode_image(&img)
        .unwrap();
    // TIFF, little-endian: IFD0 with Orientation and a GPS IFD pointer; the GPS IFD with
    // latitude ref 'N'
    let mut tiff = b"II*\x00\x08\x00\x00\x00".to_vec();
    tiff.extend_from_slice(&2u16.to_le_bytes());
    tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]); // Orientation = 6
    tiff.extend_from_slice(&[0x25, 0x88, 4, 0, 1, 0, 0, 0, 38, 0, 0, 0]); // GPS IFD at 38
    tiff.extend_from_slice(&0u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&[0x01, 0x00, 2, 0, 2, 0, 0, 0, b'N', 0, 0, 0]); // GPSLatitudeRef "N"
    tiff.extend_from_slice(&0u32.to_le_bytes());
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = vec![0xff, 0xd8, 0xff, 0xe1];
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&plain[2..]);
    out
}

pub(crate) async fn wait_settled(app: &TestApp, token: &str, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let u = app.get(&format!("/api/uploads/{id}"), Some(token)).await;
        assert_eq!(u.status, StatusCode::OK);
        if u.json["upload"]["state"] != "processing" {
            return u.json["upload"].clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still processing: {}",
            u.json
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn crescendo_app_id(id: &str) -> crescendo_domain::Id {
    crescendo_domain::Id::from_i64(id.parse().unwrap())
}

async fn fetch(app: &TestApp, url: &str) -> reqwest::Response {
    reqwest::get(app.url(url)).await.unwrap()
}

/// Sets the cover of the article `slug` to `cover` (`null` removes it).
async fn set_cover(app: &TestApp, token: &str, slug: &str, cover: Value) -> Answer {
    let body = json!({"article": {"coverImage": cover}});
    app.put(&format!("/api/articles/{slug}"), Some(token), body)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_answers_at_once_and_its_variants_appear() {
    let app = TestApp::spawn().await;
    let token = app.register("painter").await;
    let (status, body) = upload(&app, Some(&token), "file", "wide.png", &png(1600, 800)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let u = &body["upload"];
    assert_eq!(u["state"], "processing");
    let id = u["id"].as_str().unwrap().to_string();
    let done = wait_settled(&app, &token, &id).await;
    assert_eq!(done["state"], "ready", "{done}");
    for (name, want) in [("64", (64, 32)), ("320", (320, 160)), ("1280", (1280, 640))] {
        let url = done["variants"][name].as_str().unwrap();
        assert!(url.starts_with("/media/uploads/"), "{url}");
        let res = fetch(&app, url).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "image/jpeg");
        assert!(
            res.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        let img = image::load_from_memory(&res.bytes().await.unwrap()).unwrap();
        assert_eq!(img.dimensions(), want, "variant {name}");
    }
    // a PNG (a lossless kind) has WebP variants too
    for (name, want) in [("64", (64, 32)), ("320", (320, 160)), ("1280", (1280, 640))] {
        let url = done["webp"][name]
            .as_str()
            .unwrap_or_else(|| panic!("a WebP {name}: {done}"));
        assert!(url.ends_with(".webp"), "{url}");
        let res = fetch(&app, url).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "image/webp");
        let img =
            image::load_from_memory_with_format(&res.bytes().await.unwrap(), ImageFormat::WebP)
                .unwrap();
        assert_eq!(img.dimensions(), want, "WebP variant {name}");
    }
    // the full-size image is a cleaned re-encoding; the uploaded bytes are never served
    let original = fetch(&app, done["original"].as_str().unwrap()).await;
    assert_eq!(original.headers()["content-type"], "image/jpeg");
    let full = image::load_from_memory(&original.bytes().await.unwrap()).unwrap();
    assert_eq!(full.dimensions(), (1600, 800));

    // an avatar is an upload's URL
    let avatar = done["variants"]["320"].as_str().unwrap();
    let put = app
        .put(
            "/api/user",
            Some(&token),
            json!({"user": {"image": avatar}}),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.json);
    assert_eq!(
        app.get("/api/profiles/painter", None).await.json["profile"]["image"],
        avatar
    );
    assert_eq!(
        app.get("/api/uploads/999", Some(&token)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/uploads/nonsense", Some(&token)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        fetch(&app, "/media/uploads/1/64.jpg").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        fetch(&app, "/media/../etc/passwd").await.status(),
        StatusCode::NOT_FOUND
    );
    let raw = format!(
        "/media/{}",
        app.app
            .upload(
                app.app.authenticate(&token).await.unwrap(),
                crescendo_app_id(&id)
            )
            .await
            .unwrap()
            .record
            .original
    );
    assert!(raw.starts_with("/media/originals/"), "{raw}");
    assert_eq!(
        fetch(&app, &raw).await.status(),
        StatusCode::NOT_FOUND,
        "uploaded bytes are private"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_files_are_refused_with_clear_errors_and_the_worker_keeps_going() {
    let app = TestApp::spawn_with(|s| s.blobs.max_upload_bytes = 300_000).await;
    let token = app.register("mallory").await;
    let t = Some(token.as_str());

    let good = png(64, 64);
    let (status, body) = upload(&app, t, "file", "cut.png", &good[..good.len() / 2 - 40]).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a truncated file with a readable header is taken: {body}"
    );
    let truncated = body["upload"]["id"].as_str().unwrap().to_string();

    let (small, bomb, big) = (png(10, 10), png_bomb(), vec![0x89; 400_000]);
    let html = b"<html><script>alert(1)</script></html>".as_slice();
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    // what, token, field, file name, bytes and the status it gets
    let refused = [
        (
            "no token",
            None,
            "file",
            "a.png",
            &small[..],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong magic bytes",
            t,
            "file",
            "fake.png",
            html,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "no `file` field",
            t,
            "picture",
            "a.png",
            &good[..],
            unprocessable,
        ),
    ];
    for (what, token, field, name, bytes, expected) in refused {
        let (status, body) = upload(&app, token, field, name, bytes).await;
        assert_eq!(status, expected, "{what}: {body}");
    }
    // what, file name and bytes, then the status and the error's field and text
    let explained = [
        (
            "a header cut short",
            "cut.png",
            &good[..20],
            unprocessable,
            "file",
            "cannot be read",
        ),
        (
            "a decompression bomb",
            "bomb.png",
            &bomb[..],
            unprocessable,
            "file",
            "30000 × 30000",
        ),
        (
            "too large",
            "big.png",
            &big[..],
            StatusCode::PAYLOAD_TOO_LARGE,
            "body",
            "300000",
        ),
    ];
    for (what, name, bytes, expected, key, text) in explained {
        let (status, body) = upload(&app, t, "file", name, bytes).await;
        assert_eq!(status, expected, "{what}: {body}");
        let message = body["errors"][key][0].as_str().unwrap_or_default();
        assert!(message.contains(text), "{what}: {body}");
    }
    let res = app
        .request(reqwest::Method::POST, "/api/uploads", t)
        .json(&json!({"file": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "not multipart"
    );

    // the truncated one fails in the worker, with a reason, and the worker goes on
    let failed = wait_settled(&app, &token, &truncated).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("cannot be read"),
        "{failed}"
    );

    // EXIF: turned upright, and nothing of it (orientation, GPS) is in the variants
    let (status, body) = upload(&app, t, "file", "phone.jpg", &jpeg_with_exif_gps()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let done = wait_settled(&app, &token, body["upload"]["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "ready", "{done}");
    let bytes = fetch(&app, done["variants"]["64"].as_str().unwrap())
        .await
        .bytes()
        .await
        .unwrap();
    assert!(!bytes.windows(4).any(|w| w == b"Exif"), "EXIF survived");
    assert_eq!(
        done["webp"],
        Value::Null,
        "a photograph gets JPEG variants only"
    );
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!(
        img.dimensions(),
        (20, 40),
        "orientation 6 turns the 40 × 20 image upright"
    );
    // the red half (left, before turning) is now on top
    let top = img.get_pixel(10, 5);
    assert!(top[0] > 150 && top[2] < 100, "top is {top:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_article_takes_an_uploads_url_as_its_cover_and_its_page_shows_it() {
    let app = TestApp::spawn().await;
    let token = app.register("coverer").await;
    let (_, body) = upload(&app, Some(&token), "file", "c.png", &png(1400, 700)).await;
    let done = wait_settled(&app, &token, body["upload"]["id"].as_str().unwrap()).await;
    let cover = done["variants"]["1280"].as_str().unwrap().to_string();

    let a = post_article(
        &app,
        &token,
        json!({"title": "Covered", "description": "d", "body": "b", "coverImage": cover}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.json);
    assert_eq!(a.json["article"]["coverImage"], cover.as_str());
    let slug = a.json["article"]["slug"].as_str().unwrap().to_string();
    let plain = post_article(
        &app,
        &token,
        json!({"title": "Plain", "description": "d", "body": "b"}),
    )
    .await;
    assert_eq!(
        plain.json["article"]["coverImage"],
        Value::Null,
        "no cover: null"
    );
    let page = format!("/article/{slug}");
    let bad = set_cover(&app, &token, &slug, json!("javascript:alert(1)")).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.json["errors"]["coverImage"].is_array(), "{}", bad.json);

    // the page shows the cover; the list shows it too
    let shown = fetch(&app, &page).await.text().await.unwrap();
    assert!(
        shown.contains(&format!("<img class=\"cover\" src=\"{cover}\"")),
        "the article page shows its cover"
    );
    let list = app.get("/api/articles?limit=5", None).await;
    assert_eq!(list.json["articles"][1]["coverImage"], cover.as_str());
    // and null removes it
    let cleared = set_cover(&app, &token, &slug, Value::Null).await;
    assert_eq!(cleared.json["article"]["coverImage"], Value::Null);
    let shown = fetch(&app, &page).await.text().await.unwrap();
    assert!(!shown.contains("class=\"cover\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_on_s3_survive_the_object_server_going_away_with_503s_not_500s() {
    let dir = tempfile::tempdir().unwrap();
    let mut s3 = crescendo_topology::s3::S3::start(dir.path(), "127.0.0.1:0".parse().unwrap())
        .expect("s3s-fs starts");
    let app = TestApp::spawn_with(|s| {
        crescendo_testkit::keep_blobs_on(s, &s3);
        s.blobs.s3_timeout_ms = 500;
    })
    .await;
    let token = app.register("cloudy").await;
    let (status, body) = upload(&app, Some(&token), "file", "a.png", &png(300, 200)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let done = wait_settled(&app, &token, body["upload"]["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "ready", "{done}");
    let variant = done["variants"]["64"].as_str().unwrap().to_string();
    let key = variant.trim_start_matches("/media/");
    assert!(
        s3.objects()
            .join(crescendo_topology::s3::BUCKET)
            .join(key)
            .is_file(),
        "the variant is an object in the bucket"
    );

    s3.stop();
    let (status, body) = upload(&app, Some(&token), "file", "b.png", &png(30, 20)).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "no blob store, no upload: {body}"
    );
    assert!(body["errors"].is_object(), "the API's error format: {body}");
    assert_eq!(
        fetch(&app, &variant).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let records = app.get("/api/articles", None).await;
    assert_eq!(
        records.status,
        StatusCode::OK,
        "the rest of the service goes on"
    );

    s3.restart().unwrap();
    assert_eq!(
        fetch(&app, &variant).await.status(),
        StatusCode::OK,
        "served again after the restart"
    );
    let (status, body) = upload(&app, Some(&token), "file", "c.png", &png(30, 20)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        wait_settled(&app, &token, body["upload"]["id"].as_str().unwrap()).await["state"],
        "ready"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_upload_forms_set_a_picture_and_a_cover() {
    let app = TestApp::spawn().await;
    let mut b = Browser::new(&app);
    b.sign_up("framer").await;

    // the settings page's picture form
    let csrf = b.csrf_from("/settings").await;
    let p = b
        .post_multipart(
            "/settings/picture",
            &[("csrf", &csrf)],
            "file",
            &png(500, 250),
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location.as_deref(), Some("/settings"));
    let image = app.get("/api/profiles/framer", None).await.json["profile"]["image"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        image.starts_with("/media/uploads/") && image.ends_with("/320.jpg"),
        "{image}"
    );
    assert!(
        b.get("/settings").await.body.contains(&image),
        "the settings page shows the picture"
    );
    let started = Instant::now();
    while fetch(&app, &image).await.status() != StatusCode::OK {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the picture never appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // an article written through the editor, then its page's cover form
    let csrf = b.csrf_from("/editor").await;
    let p = write_article(&mut b, "/editor", ["Framed", "d", "b", ""], &csrf).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let page = p.location.unwrap();
    let csrf = b.csrf_from(&page).await;
    let p = b
        .post_multipart(
            &format!("{page}/cover"),
            &[("csrf", &csrf)],
            "file",
            &png(1400, 700),
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location.as_deref(), Some(page.as_str()));
    let shown = b.get(&page).await.body;
    let slug = page.trim_start_matches("/article/");
    let cover = app.get(&format!("/api/articles/{slug}"), None).await.json["article"]["coverImage"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(cover.ends_with("/1280.jpg"), "{cover}");
    assert!(
        shown.contains(&format!("class=\"cover\" src=\"{cover}\"")),
        "the article's page shows the cover"
    );

    // what the forms refuse, as pages
    let csrf = b.csrf_from("/settings").await;
    let p = b
        .post_multipart(
            "/settings/picture",
            &[("csrf", "forged")],
            "file",
            &png(10, 10),
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "a forged CSRF token");
    let p = b
        .post_multipart(
            "/settings/picture",
            &[("csrf", &csrf)],
            "file",
            b"not an image at all",
        )
        .await;
    assert_eq!(p.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", p.body);
    let p = b
        .post_multipart("/settings/picture", &[("csrf", &csrf)], "file", b"")
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    assert!(p.body.contains("choose an image"), "{}", p.body);
    let other = {
        let mut o = Browser::new(&app);
        o.sign_up("stranger").await;
        let csrf = o.csrf_from(&page).await;
        o.post_multipart(
            &format!("{page}/cover"),
            &[("csrf", &csrf)],
            "file",
            &png(20, 20),
        )
        .await
    };
    assert_eq!(
        other.status,
        StatusCode::FORBIDDEN,
        "only the author sets a cover: {}",
        other.body
    );
    assert_eq!(
        app.get(&format!("/api/articles/{slug}"), None).await.json["article"]["coverImage"],
        cover.as_str()
    );
}
