//! Issue 30, finding 2, with a real container (run by `container_faults_limits_volume_and_exposed_service`).

use std::time::Duration;

use fogd::journal::Invocation;
use fogd_testkit::FogdNode;

use super::rt;

/// Issue 30, finding 2, with a real container: `planter` linked its mounted bucket to the host's
/// root and `/etc/hostname`, and put a link among its outputs. With its own S3 keys nothing
/// behind those links is read or written, and no output is the host's file.
pub fn links_planted_by_a_container_lead_nowhere(node: &FogdNode, inv: Invocation) {
    let files = node.dir.join("data/store/vault/files");
    assert!(
        std::fs::symlink_metadata(files.join("hostroot")).is_ok_and(|m| m.file_type().is_symlink()),
        "the container planted its link: {inv:?}"
    );
    let out = node.dir.join("data/store/plant/out");
    assert!(out.join("done.txt").is_file(), "{inv:?}");
    assert!(
        !std::fs::symlink_metadata(out.join("hostname")).is_ok_and(|m| m.is_file()),
        "a link among the outputs was stored as the host's file: {inv:?}"
    );
    let escape = format!("/tmp/fogd-escape-{}", std::process::id());
    let http = reqwest::Client::new();
    let steps = async {
        let s3 = node.service_keys(&http, "planter").await.client();
        for key in [
            "files/hostroot/etc/hostname",
            "files/hostname",
            "files/hostroot/etc/passwd",
        ] {
            let got = s3.get_object().bucket("vault").key(key).send().await;
            assert!(got.is_err(), "{key} was served through the container's link");
        }
        let key = format!("files/hostroot{escape}");
        let _ = s3
            .put_object()
            .bucket("vault")
            .key(&key)
            .body(b"x".to_vec().into())
            .send()
            .await;
        let listed = s3.list_objects_v2().bucket("vault").send().await.unwrap();
        let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
        assert!(keys.contains(&"files/mine.txt"), "{keys:?}");
        assert!(
            !keys
                .iter()
                .any(|k| k.starts_with("files/hostroot/etc") || *k == "files/hostname"),
            "{keys:?}"
        );
        let mine = s3
            .get_object()
            .bucket("vault")
            .key("files/mine.txt")
            .send()
            .await
            .unwrap();
        assert_eq!(
            mine.body.collect().await.unwrap().into_bytes().as_ref(),
            b"mine\n"
        );
    };
    rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(120), steps)
            .await
            .expect("the S3 steps ended within 2 minutes")
    });
    assert!(
        !std::path::Path::new(&escape).exists(),
        "a PUT went through the container's link to the host"
    );
}
