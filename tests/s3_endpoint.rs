//! fogd's S3 endpoint over the local store, driven by real S3 clients from PyPI and Debian
//! (tests/s3/clients.py: oscar-python's storage client, boto3, rclone) against a `fogd run` of
//! tests/s3/upper.yaml: objects put through it trigger the service as `fogd put` does.

use crate::common;

use std::path::Path;

use common::FogdNode;

#[test]
fn real_s3_clients_upload_list_fetch_and_trigger_through_the_endpoint() {
    let tmp = tempfile::tempdir().expect("tmp");
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/s3");
    let node = FogdNode::start(
        Path::new(env!("CARGO_BIN_EXE_fogd")),
        &tmp.path().join("node"),
        "s3-test",
        "",
        Some(&here.join("upper.yaml")),
    );
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).expect("work");
    let (ok, text) = common::run_python(
        &here.join("clients.py"),
        &[node.url.as_ref(), node.password.as_ref(), work.as_os_str()],
    );
    let log = std::fs::read_to_string(node.dir.join("fogd.log")).unwrap_or_default();
    assert!(
        ok && text.contains("all steps passed"),
        "{text}\n--- fogd.log (tail) ---\n{}",
        log.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // What arrived is in the store as plain files, and the journal says where it came from.
    let store = node.dir.join("data/store");
    assert_eq!(
        std::fs::read(store.join("s3in/out/hello.txt.up")).expect("output"),
        b"HELLO THROUGH S3\n"
    );
    assert_eq!(
        std::fs::metadata(store.join("bulk/dir/big.bin"))
            .expect("big")
            .len(),
        100 << 20
    );
    assert!(
        !node.dir.join("data/s3-uploads").exists()
            || std::fs::read_dir(node.dir.join("data/s3-uploads"))
                .expect("uploads")
                .count()
                == 0,
        "finished uploads leave no parts"
    );
    let j = node.journal();
    assert!(j
        .has_event(
            "minio.default",
            "s3in/in/hello.txt",
            &content_hash(&store.join("s3in/in/hello.txt"))
        )
        .expect("journal"));
}

fn content_hash(p: &Path) -> String {
    fogd::store::content_hash(&std::fs::read(p).expect("read"))
}

/// Issue 30's findings 1-7 against a running node, as a hostile service owner (its own S3 keys,
/// a script that plants links in its mounted bucket) and a stranger on the network would try
/// them: tests/s3/attack.py with boto3, requests and raw sockets.
#[test]
fn the_s3_endpoint_gives_no_service_or_stranger_what_is_not_theirs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/s3");
    let node = FogdNode::start(
        Path::new(env!("CARGO_BIN_EXE_fogd")),
        &tmp.path().join("node"),
        "s3-attack",
        "gateway: {listen: '{listen}', body_timeout: 2s, s3: {listen: '127.0.0.1:0'}}\n",
        Some(&here.join("attack.yaml")),
    );
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).expect("work");
    let data = node.dir.join("data");
    let (ok, text) = common::run_python(
        &here.join("attack.py"),
        &[
            node.url.as_ref(),
            node.password.as_ref(),
            work.as_os_str(),
            data.as_os_str(),
            node.pid().expect("running").to_string().as_ref(),
        ],
    );
    let log = std::fs::read_to_string(node.dir.join("fogd.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    assert!(
        ok && text.contains("all steps passed"),
        "{text}\n--- fogd.log (tail) ---\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}
