//! MQTT ingest against what a broker full of camera frames can send (issue 17, findings 3, 4
//! and 11): one message far over the size limit, a backlog of large frames held by bytes (not
//! messages), and frames that are JPEG bombs or cut off.

use crate::ingest_support;

use fogd_testkit::FogdNode;
use ingest_support::*;

/// About `size` bytes: the test photo with a comment segment carrying `tag`, and padding.
fn frame(tag: &str, size: usize) -> Vec<u8> {
    fogd_testkit::padded_jpeg(&tagged_jpeg(&face_jpeg(), tag), size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_counted_and_skipped_and_the_session_lives() {
    let tmp = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(&tmp.path().join("mosquitto"));
    let wf = workflow(tmp.path(), LOCAL_FDL, &[("anon.sh", ANON)]);
    let node = Node::start(node_cfg(tmp.path(), &broker, "big"), &wf).await;
    let mut m = Mqtt::connect(broker.port, "test-big").await;
    wait_online(&mut m, "big").await;
    // 3 MB where 200 kB is the limit. Before: the client's packet limit failed the connection,
    // the broker redelivered the message at every reconnect, and nothing after it came in.
    assert!(m.send("fogd/cameras/door/frame", frame("huge", 3_000_000)).await);
    // A header declaring 30000x30000 pixels, and a frame cut in half.
    let photo = face_jpeg();
    let bomb = fogd_testkit::jpeg_bomb(&photo);
    assert!(m.send("fogd/cameras/door/frame", bomb).await);
    let cut = tagged_jpeg(&photo, "cut");
    assert!(
        m.send("fogd/cameras/door/frame", cut[..cut.len() / 2].to_vec())
            .await
    );
    for i in 0..5 {
        assert!(
            m.send("fogd/cameras/door/frame", frame(&format!("ok-{i}"), 50_000))
                .await
        );
    }
    node.wait_ingested(5, 30).await;
    for (name, want) in [
        ("ingest_rejected_too_large", 1),
        ("ingest_rejected_too_many_pixels", 1),
        ("ingest_rejected_truncated", 1),
    ] {
        assert_eq!(counter(&node, name), want, "{name}");
    }
    // Acknowledged: a reconnect brings nothing back.
    broker_redelivers_nothing(&node).await;
    node.stop().await;
}

async fn broker_redelivers_nothing(node: &Node) {
    let before = node.ingested();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(node.ingested(), before);
    assert_eq!(
        counter(node, "ingest_rejected_too_large"),
        1,
        "not delivered again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_at_the_broker_is_taken_within_the_memory_budget() {
    let tmp = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(&tmp.path().join("mosquitto"));
    let yaml = format!(
        "mqtt: {{broker: '127.0.0.1:{}', client_id: fogd-flood, max_frame_bytes: 2000000, max_buffer_bytes: 8388608, stats_interval: 1s}}\n",
        broker.port
    );
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_fogd"));
    let dir = tmp.path().join("node");
    let mut m = Mqtt::connect(broker.port, "test-flood").await;
    // The first start makes the persistent session and its subscription; then fogd is away.
    {
        let _n = FogdNode::start(bin, &dir, "flood", &yaml, None);
        wait_online(&mut m, "flood").await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // 200 frames of 1 MiB wait at the broker (it sends up to 1000 unacknowledged at once).
    const N: u64 = 200;
    for i in 0..N {
        assert!(
            m.send(
                &format!("fogd/cameras/cam{}/frame", i % 4),
                frame(&format!("f{i}"), 1 << 20)
            )
            .await
        );
    }
    let node = FogdNode::start(bin, &dir, "flood", &yaml, None);
    let pid = node.pid().expect("pid");
    let j = node.journal();
    let ingested = || {
        j.ingest_counts()
            .expect("counts")
            .iter()
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while ingested() < N {
        assert!(Instant::now() < deadline, "{} of {N} ingested", ingested());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Before: the whole in-flight window (200 MiB here) sat in a channel.
    let peak = fogd_testkit::proc_status_kib(pid, "VmHWM:") / 1024;
    assert!(peak < 120, "fogd peaked at {peak} MiB with an 8 MiB buffer");
}
