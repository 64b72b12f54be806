//! The gateway against callers who are not playing fair (issue 17, findings 1, 2 and 13): bodies
//! sent without credentials, bodies and connections that stall, one address opening every
//! connection it can, and wrong passwords in bulk. Each case runs against a real `fogd run`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use fogd_testkit::FogdNode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Timeouts of a second, 20 connections per address, 5 wrong passwords a minute.
fn start(dir: &Path, extra: &str) -> FogdNode {
    FogdNode::start(
        Path::new(env!("CARGO_BIN_EXE_fogd")),
        dir,
        "abuse",
        &format!(
            "gateway: {{listen: '{{listen}}', max_body_bytes: 8388608, header_timeout: 1s, body_timeout: 1s, max_connections_per_ip: 20, max_auth_failures_per_minute: 5}}\n{extra}"
        ),
        None,
    )
}

fn addr(g: &FogdNode) -> SocketAddr {
    g.url.trim_start_matches("http://").parse().expect("address")
}

/// A connection from a chosen loopback address (127.0.0.0/8 is all ours).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().expect("socket");
    s.bind(SocketAddr::new(IpAddr::from(from), 0)).expect("bind");
    s.connect(to).await.expect("connect")
}

/// Reads until the server closes or `limit` passes; the bytes read, and whether it closed.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn basic(password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("oscar:{password}"))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_without_credentials_are_refused_before_they_are_read() {
    let tmp = tempfile::tempdir().expect("tmp");
    let g = start(tmp.path(), "");
    let pid = g.pid().expect("pid");
    let to = addr(&g);
    let rss_before = fogd_testkit::proc_status_kib(pid, "VmRSS:");
    // Eight clients each declare 7 MiB (under the 8 MiB limit), send it all, and never
    // authenticate. Before: each body was read into memory, then refused (56 MiB held).
    let mut tasks = Vec::new();
    for _ in 0..8 {
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(to).await.expect("connect");
            let body = vec![b'x'; 7 << 20];
            let head = format!(
                "POST /system/services HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).await.expect("head");
            // The answer comes before the body is taken: writing may then fail (reset).
            let _ = s.write_all(&body).await;
            read_until_closed(&mut s, Duration::from_secs(10)).await.0
        }));
    }
    for t in tasks {
        let answer = t.await.expect("client");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 401"),
            "{answer}"
        );
    }
    let grown_mib = fogd_testkit::proc_status_kib(pid, "VmRSS:").saturating_sub(rss_before) / 1024;
    assert!(
        grown_mib < 24,
        "fogd grew by {grown_mib} MiB on unauthenticated bodies"
    );

    // A declared length over the limit is refused at once, even for the admin.
    let mut s = TcpStream::connect(to).await.expect("connect");
    let head = format!(
        "POST /system/services HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: 100000000\r\n\r\n",
        basic(&g.password)
    );
    s.write_all(head.as_bytes()).await.expect("head");
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("max_body_bytes"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_and_idle_connections_are_closed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let g = start(tmp.path(), "");
    let to = addr(&g);
    // A connection that never sends a request.
    let mut idle = TcpStream::connect(to).await.expect("connect");
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(8)).await;
    assert!(
        closed,
        "an idle connection is closed after gateway.header_timeout"
    );

    // A keep-alive connection after one answer.
    let mut kept = TcpStream::connect(to).await.expect("connect");
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("req");
    let (answer, closed) = read_until_closed(&mut kept, Duration::from_secs(8)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle keep-alive connection is closed too");

    // A request head sent a byte at a time never completes.
    let mut slow = TcpStream::connect(to).await.expect("connect");
    let mut closed = false;
    for b in b"GET /health HTTP/1.1\r\nHost: slowloris\r\nX-A: "
        .iter()
        .cycle()
        .take(40)
    {
        if slow.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let closed = closed || read_until_closed(&mut slow, Duration::from_secs(5)).await.1;
    assert!(closed, "a head dribbled in is cut off");

    // An authenticated body that stops half-way: 408.
    let mut s = TcpStream::connect(to).await.expect("connect");
    let head = format!(
        "POST /system/services HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: 1000\r\n\r\n{{\"name\":",
        basic(&g.password)
    );
    s.write_all(head.as_bytes()).await.expect("head");
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let tmp = tempfile::tempdir().expect("tmp");
    let g = FogdNode::start(
        Path::new(env!("CARGO_BIN_EXE_fogd")),
        tmp.path(),
        "abuse",
        "gateway: {listen: '{listen}', header_timeout: 30s, max_connections_per_ip: 20}\n",
        None,
    );
    let to = addr(&g);
    let pid = g.pid().expect("pid");
    // fogd raised its open-files limit to the hard limit at start.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("nofile");
    let v: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(v[3], v[4], "soft = hard open-files limit: {line}");

    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect_from([127, 0, 0, 2], to).await);
    }
    // Give the server the time to accept them all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut over = connect_from([127, 0, 0, 2], to).await;
    let _ = over.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (answer, closed) = read_until_closed(&mut over, Duration::from_secs(5)).await;
    assert!(
        closed && answer.is_empty(),
        "the 21st from one address is closed at once: {answer:?}"
    );
    // Another address is served meanwhile.
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/health", g.url))
        .send()
        .await
        .expect("health");
    assert_eq!(r.status().as_u16(), 200);
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = connect_from([127, 0, 0, 2], to).await;
    again
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("req");
    let (answer, _) = read_until_closed(&mut again, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "slots come back: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_throttled_per_address() {
    let tmp = tempfile::tempdir().expect("tmp");
    let g = start(tmp.path(), "");
    let attacker = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 4]))
        .build()
        .expect("client");
    // 16 at once (under the 20 connections an address may hold), 6 guesses each.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (c, url) = (attacker.clone(), g.url.clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for k in 0..6 {
                let r = c
                    .get(format!("{url}/system/info"))
                    .basic_auth("oscar", Some(format!("guess-{i}-{k}")))
                    .send()
                    .await
                    .expect("send");
                let retry = r.headers().contains_key("retry-after");
                statuses.push((r.status().as_u16(), retry));
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("attacker"));
    }
    let wrong = all.iter().filter(|(s, _)| *s == 403).count();
    let throttled = all.iter().filter(|(s, r)| *s == 429 && *r).count();
    let slots = std::thread::available_parallelism()
        .map_or(1, |n| n.get() / 2)
        .max(1);
    // Every wrong password hashed counts; a check that waited for a slot is looked at again.
    assert!(wrong <= 5 + slots, "{wrong} wrong passwords were hashed: {all:?}");
    assert_eq!(wrong + throttled, all.len(), "{all:?}");
    // The admin from another address is not locked out.
    let r = reqwest::Client::new()
        .get(format!("{}/system/info", g.url))
        .basic_auth("oscar", Some(&g.password))
        .send()
        .await
        .expect("admin");
    assert_eq!(r.status().as_u16(), 200);
}

/// A script that copies its input to its output, for `/run` and `/job` with large bodies.
const COPY: &str = "cp \"$INPUT_FILE_PATH\" \"$TMP_OUTPUT_DIR/copy.bin\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_inputs_and_outputs_are_streamed_not_held() {
    use base64::Engine;
    let tmp = tempfile::tempdir().expect("tmp");
    let g = FogdNode::start(
        Path::new(env!("CARGO_BIN_EXE_fogd")),
        tmp.path(),
        "abuse",
        "gateway: {listen: '{listen}', max_body_bytes: 134217728}\n",
        None,
    );
    let pid = g.pid().expect("pid");
    let http = reqwest::Client::new();
    let svc = serde_json::json!({"name": "copy", "image": "x", "script": COPY});
    let r = http
        .post(format!("{}/system/services", g.url))
        .basic_auth("oscar", Some(&g.password))
        .body(svc.to_string())
        .send()
        .await
        .expect("create");
    assert_eq!(r.status().as_u16(), 201);
    // 48 MiB of incompressible bytes, sent base64 in lines as OSCAR's clients do.
    let mut input = vec![0u8; 48 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in input.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(&input);
    let wrapped: String = b64
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
        .collect();
    let r = http
        .post(format!("{}/run/copy", g.url))
        .basic_auth("oscar", Some(&g.password))
        .body(wrapped)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("run");
    assert_eq!(r.status().as_u16(), 200);
    let answer = r.bytes().await.expect("body");
    let got = base64::engine::general_purpose::STANDARD
        .decode(&answer)
        .expect("base64 answer");
    assert!(got == input, "the output is the input, byte for byte");
    // Body, decoded input and encoded output were each 48-64 MiB: held, they would show.
    let peak_mib = fogd_testkit::proc_status_kib(pid, "VmHWM:") / 1024;
    assert!(peak_mib < 100, "fogd peaked at {peak_mib} MiB");
    // Nothing left in the work folder or the upload spool.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left: Vec<_> = std::fs::read_dir(g.dir.join("data/work"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
    let spooled: Vec<_> = std::fs::read_dir(g.dir.join("data"))
        .expect("data")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("upload-"))
        .collect();
    assert!(spooled.is_empty(), "spool files left: {spooled:?}");
}
