//! `S3Blobs` against a real S3-compatible server (s3s-fs, started here on loopback).

use bytes::Bytes;
use crescendo_blobs::{Blobs, conformance};
use crescendo_blobs_s3::{S3Blobs, S3Options};
use crescendo_topology::s3::{BUCKET, REGION, S3};
use std::time::Duration;

fn options(s3: &S3) -> S3Options {
    S3Options {
        endpoint: s3.endpoint(),
        bucket: BUCKET.into(),
        region: REGION.into(),
        access_key: s3.access_key().into(),
        secret_key: s3.secret_key().into(),
        timeout: Duration::from_secs(2),
    }
}

#[tokio::test]
async fn s3_blobs_conform_on_a_real_server_and_are_plain_objects_there() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3::start(dir.path(), "127.0.0.1:0".parse().unwrap()).expect("s3s-fs starts");
    let blobs = S3Blobs::new(&options(&s3)).unwrap();
    conformance::run(&blobs).await;

    // what was put is an object in the bucket, byte for byte
    blobs
        .put("uploads/ab/photo.jpg", Bytes::from_static(b"\xff\xd8jpeg"))
        .await
        .unwrap();
    let on_disk = std::fs::read(s3.objects().join(BUCKET).join("uploads/ab/photo.jpg")).unwrap();
    assert_eq!(on_disk, b"\xff\xd8jpeg");
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_a_lost_server_is_an_error_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut s3 = S3::start(dir.path(), "127.0.0.1:0".parse().unwrap()).expect("s3s-fs starts");
    let blobs = S3Blobs::new(&options(&s3)).unwrap();
    blobs
        .put("uploads/kept.jpg", Bytes::from_static(b"kept"))
        .await
        .unwrap();

    let forged = S3Blobs::new(&S3Options {
        secret_key: "not-the-secret".into(),
        ..options(&s3)
    })
    .unwrap();
    let err = forged
        .get("uploads/kept.jpg")
        .await
        .expect_err("a bad signature is refused");
    assert!(
        err.to_string().contains("Signature") || err.to_string().contains("403"),
        "{err}"
    );
    assert!(
        forged
            .put("uploads/forged.jpg", Bytes::from_static(b"x"))
            .await
            .is_err()
    );
    assert!(
        !s3.objects()
            .join(BUCKET)
            .join("uploads/forged.jpg")
            .exists(),
        "nothing stored by a forger"
    );

    s3.stop();
    // bounded by the time-out and a few retries: an error, never a hang
    let lost = async {
        assert!(
            blobs
                .put("uploads/lost.jpg", Bytes::from_static(b"x"))
                .await
                .is_err(),
            "no server, no success"
        );
        assert!(
            blobs.get("uploads/kept.jpg").await.is_err(),
            "an error, not a missing object"
        );
    };
    tokio::time::timeout(Duration::from_secs(60), lost)
        .await
        .expect("operations on a lost server end");

    s3.restart().unwrap();
    assert_eq!(
        blobs.get("uploads/kept.jpg").await.unwrap(),
        Some(Bytes::from_static(b"kept")),
        "objects outlive a restart"
    );
}
