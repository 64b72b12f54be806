//! The S3 port's share of the abuse soak (issue 30): while the API is loaded, a service's own
//! clients put, fetch and list a bucket of many keys on port 9000's stand-in, and strangers try
//! what the port must survive: anonymous stalled and huge uploads, form posts, and stalled
//! uploads through a presigned (signed) URL. Each task counts what it saw in `S3Tally`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

#[derive(Default)]
pub struct S3Tally {
    pub own_ok: AtomicU64,
    pub own_failed: AtomicU64,
    pub own_worst_ms: AtomicU64,
    pub listings: AtomicU64,
    pub listings_wrong: AtomicU64,
    pub listing_worst_ms: AtomicU64,
    pub anonymous_turned_away: AtomicU64,
    pub forms_refused: AtomicU64,
    pub huge_refused: AtomicU64,
    pub signed_stalls: AtomicU64,
    /// Longest time fogd kept a stalled signed upload open after its last byte.
    pub stall_held_worst_ms: AtomicU64,
}

/// Where the load goes: the S3 endpoint, a service's own keys and bucket, and a presigned
/// upload URL made with the admin's keys.
#[derive(Clone)]
pub struct S3Target {
    pub keys: Arc<fogd_testkit::ServiceKeys>,
    pub bucket: String,
    /// Keys under `shelf/` in `bucket`, made on disk before the load.
    pub shelf_keys: u64,
    pub presigned_put: String,
}

impl S3Target {
    fn addr(&self) -> SocketAddr {
        self.keys
            .endpoint
            .trim_start_matches("http://")
            .parse()
            .expect("endpoint address")
    }
}

/// Makes `n` small files under `dir/shelf/`, in folders of 1,000 (a day of 1 fps outputs).
pub fn fill_shelf(bucket_dir: &Path, n: u64) {
    for i in 0..n {
        let d = bucket_dir.join(format!("shelf/h{:03}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&d).expect("shelf folder");
        }
        std::fs::write(d.join(format!("f{i:06}.txt")), i.to_string()).expect("shelf file");
    }
}

async fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(IpAddr::from(from), 0))?;
    s.connect(to).await
}

/// Reads until fogd closes the connection (or `within` passes): the first bytes of the answer.
async fn answer(s: &mut tokio::net::TcpStream, within: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    let closed = tokio::time::timeout(within, async {
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(n) if got.len() < 256 => got.extend_from_slice(&b[..n]),
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

fn status_of(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Starts every S3 task; they run until `done`.
pub fn start(t: &S3Target, tally: &Arc<S3Tally>, done: &Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let s3 = t.keys.client();
    // The service's own clients: put a small object, fetch it back, compare.
    for c in 0..4u64 {
        let (s3, t, tally, done) = (s3.clone(), t.clone(), tally.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut k = 0u64;
            while !done.load(Ordering::Relaxed) {
                let key = format!("own/c{c}/o{k}");
                let body = format!("object {c} {k}").repeat(200);
                let t0 = Instant::now();
                let round = async {
                    s3.put_object()
                        .bucket(&t.bucket)
                        .key(&key)
                        .body(body.clone().into_bytes().into())
                        .send()
                        .await
                        .ok()?;
                    let got = s3.get_object().bucket(&t.bucket).key(&key).send().await.ok()?;
                    let bytes = got.body.collect().await.ok()?.into_bytes();
                    (bytes.as_ref() == body.as_bytes()).then_some(())
                };
                match tokio::time::timeout(Duration::from_secs(30), round).await {
                    Ok(Some(())) => {
                        tally.own_ok.fetch_add(1, Ordering::Relaxed);
                        tally
                            .own_worst_ms
                            .fetch_max(t0.elapsed().as_millis() as u64, Ordering::Relaxed);
                    }
                    _ => {
                        tally.own_failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                k += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    // Full listings of the shelf, a page of 1,000 at a time.
    {
        let (s3, t, tally, done) = (s3.clone(), t.clone(), tally.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let mut pages = s3
                    .list_objects_v2()
                    .bucket(&t.bucket)
                    .prefix("shelf/")
                    .max_keys(1000)
                    .into_paginator()
                    .send();
                let mut n = 0u64;
                let mut ok = true;
                while let Some(p) = pages.next().await {
                    match p {
                        Ok(p) => n += p.contents().len() as u64,
                        Err(_) => {
                            ok = false;
                            break;
                        }
                    }
                    if done.load(Ordering::Relaxed) {
                        return;
                    }
                }
                if ok && n == t.shelf_keys {
                    tally.listings.fetch_add(1, Ordering::Relaxed);
                    tally
                        .listing_worst_ms
                        .fetch_max(t0.elapsed().as_millis() as u64, Ordering::Relaxed);
                } else {
                    tally.listings_wrong.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let addr = t.addr();
    // Anonymous uploads that stall after a few bytes, and anonymous 64 MiB bodies: turned away
    // on their head, before a body byte is read.
    for i in 0..72u32 {
        let (tally, done) = (tally.clone(), done.clone());
        let bucket = t.bucket.clone();
        tasks.push(tokio::spawn(async move {
            let chunk = vec![b'a'; 1 << 20];
            let huge = i >= 64;
            while !done.load(Ordering::Relaxed) {
                let Ok(mut s) = connect_from([127, 0, 0, 6], addr).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let head = format!(
                    "PUT /{bucket}/anon{i} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                    64 << 20
                );
                if s.write_all(head.as_bytes()).await.is_ok() {
                    let n = if huge { 64 } else { 0 };
                    let _ = s.write_all(&chunk[..1024]).await;
                    for _ in 0..n {
                        if s.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                }
                let (head, _) = answer(&mut s, Duration::from_secs(30)).await;
                if status_of(&head) == 403 || head.is_empty() {
                    tally.anonymous_turned_away.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Anonymous S3 form posts of 64 MiB: refused before the form is read.
    for _ in 0..4 {
        let (tally, done) = (tally.clone(), done.clone());
        let bucket = t.bucket.clone();
        tasks.push(tokio::spawn(async move {
            let chunk = vec![b'f'; 1 << 20];
            while !done.load(Ordering::Relaxed) {
                let Ok(mut s) = connect_from([127, 0, 0, 7], addr).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let head = format!(
                    "POST /{bucket} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n\
                     Content-Length: {}\r\n\r\n",
                    64 << 20
                );
                if s.write_all(head.as_bytes()).await.is_ok() {
                    for _ in 0..64 {
                        if s.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                }
                let (head, _) = answer(&mut s, Duration::from_secs(30)).await;
                if status_of(&head) == 501 || head.is_empty() {
                    tally.forms_refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Signed uploads (the presigned URL) that send 64 KiB of 64 MiB and stall; and ones that
    // announce more than S3's 5 GiB for one PUT.
    let url = t.presigned_put.trim_start_matches("http://").to_string();
    let (host, path) = url.split_once('/').expect("presigned URL");
    let (host, path) = (host.to_string(), format!("/{path}"));
    for i in 0..18u32 {
        let (tally, done, host, path) = (tally.clone(), done.clone(), host.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let chunk = vec![b's'; 1 << 20];
            let huge = i >= 16;
            while !done.load(Ordering::Relaxed) {
                let Ok(mut s) = connect_from([127, 0, 0, 8], addr).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let len: u64 = if huge { 6 << 30 } else { 64 << 20 };
                let head = format!("PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len}\r\n\r\n");
                if s.write_all(head.as_bytes()).await.is_err() {
                    continue;
                }
                if huge {
                    let (head, _) = answer(&mut s, Duration::from_secs(30)).await;
                    if (400..500).contains(&status_of(&head)) {
                        tally.huge_refused.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                if s.write_all(&chunk[..64 << 10]).await.is_err() {
                    continue;
                }
                let stalled = Instant::now();
                let (_, closed) = answer(&mut s, Duration::from_secs(60)).await;
                let held = if closed {
                    stalled.elapsed()
                } else {
                    Duration::from_secs(60)
                };
                tally.signed_stalls.fetch_add(1, Ordering::Relaxed);
                tally
                    .stall_held_worst_ms
                    .fetch_max(held.as_millis() as u64, Ordering::Relaxed);
            }
        }));
    }
    tasks
}

impl S3Tally {
    pub fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "S3: own put+get {} ok, {} failed, worst {} ms; full listings {} ({} wrong), worst {} ms; \
             anonymous uploads turned away {}; form posts refused {}; >5 GiB refused {}; \
             signed stalled uploads {}, held at most {} ms after their last byte",
            g(&self.own_ok),
            g(&self.own_failed),
            g(&self.own_worst_ms),
            g(&self.listings),
            g(&self.listings_wrong),
            g(&self.listing_worst_ms),
            g(&self.anonymous_turned_away),
            g(&self.forms_refused),
            g(&self.huge_refused),
            g(&self.signed_stalls),
            g(&self.stall_held_worst_ms),
        )
    }
}
