//! `fogd bench s3`: upload throughput through fogd's S3 endpoint beside a SeaweedFS S3 server
//! on the same machine, in the same run, with the same client (fogd's own aws-sdk-s3 store,
//! SigV4, Content-MD5 checked): small objects (50 KB) from N concurrent uploaders, and one large
//! object in 16 MiB parts. Rounds alternate between the servers; medians are printed.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use fogd::fdl::model::MinioProvider;
use fogd::store::{AnyStore, PutOptions, S3Store};
use fogd_testkit::{FogdNode, SeaweedFs, S3_KEY, S3_SECRET};

#[derive(Debug, clap::Args)]
pub struct BenchS3Args {
    /// Small objects a round.
    #[arg(long, default_value_t = 2000)]
    pub objects: usize,
    /// Their size in bytes.
    #[arg(long, default_value_t = 50_000)]
    pub object_bytes: usize,
    /// Uploaders at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// The large object, MiB.
    #[arg(long, default_value_t = 100)]
    pub large_mib: u64,
    /// Rounds a server.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    #[arg(long)]
    pub json: bool,
}

struct Server {
    name: &'static str,
    store: Arc<AnyStore>,
    small: Vec<f64>,
    large: Vec<f64>,
}

fn store(name: &str, endpoint: &str, key: &str, secret: &str) -> anyhow::Result<Arc<AnyStore>> {
    let m = MinioProvider {
        endpoint: Some(endpoint.to_string()),
        access_key: Some(key.to_string()),
        secret_key: Some(secret.to_string()),
        region: Some("us-east-1".into()),
        verify: None,
    };
    Ok(Arc::new(AnyStore::S3(S3Store::from_minio(name.into(), &m)?)))
}

async fn small_round(
    s: &Arc<AnyStore>,
    a: &BenchS3Args,
    file: &std::path::Path,
    round: usize,
) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency.max(1) {
        let (s, next, file, n) = (s.clone(), next.clone(), file.to_path_buf(), a.objects);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                s.put_file(&format!("bench/small/r{round}/{i:06}.jpg"), &file)
                    .await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(a.objects as f64 / t0.elapsed().as_secs_f64())
}

async fn large_round(
    s: &Arc<AnyStore>,
    file: &std::path::Path,
    md5: &str,
    round: usize,
) -> anyhow::Result<f64> {
    let size = std::fs::metadata(file)?.len();
    let opts = PutOptions {
        multipart_threshold: 16 << 20,
        part_bytes: 16 << 20,
        pace: None,
        checksum: "",
        receipt: None,
    };
    let t0 = Instant::now();
    s.put_checked(&format!("bench/large/r{round}.bin"), file, md5, &opts)
        .await?;
    Ok(size as f64 / t0.elapsed().as_secs_f64() / 1e6)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub async fn bench(a: BenchS3Args) -> anyhow::Result<ExitCode> {
    let root = std::env::temp_dir().join(format!("fogd-bench-s3-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&root)?;
    let bin = std::env::current_exe()
        .context("where is fogd-bench?")?
        .with_file_name("fogd");
    eprintln!("bench s3: a fogd node and a SeaweedFS on loopback ...");
    let sw = SeaweedFs::start(&root.join("weed"));
    let node = FogdNode::start(&bin, &root.join("node"), "bench-s3", "", None);
    let cfg: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/system/config", node.url))
        .basic_auth("oscar", Some(&node.password))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mp = &cfg["minio_provider"];
    let field = |k: &str| mp[k].as_str().unwrap_or_default().to_string();
    let mut servers = [
        Server {
            name: "fogd",
            store: store(
                "fogd",
                &field("endpoint"),
                &field("access_key"),
                &field("secret_key"),
            )?,
            small: Vec::new(),
            large: Vec::new(),
        },
        Server {
            name: "seaweedfs",
            store: store("seaweedfs", &sw.endpoint, S3_KEY, S3_SECRET)?,
            small: Vec::new(),
            large: Vec::new(),
        },
    ];
    let small = root.join("small.jpg");
    std::fs::write(&small, vec![0x5au8; a.object_bytes])?;
    let large = root.join("large.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&large)?);
        let block: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        for i in 0..a.large_mib {
            f.write_all(&[i as u8])?;
            f.write_all(&block[1..])?;
        }
    }
    let (_, _, md5) = fogd::store::file_digests(&large)?;
    // Warm-up: buckets made, connections open.
    for s in &servers {
        s.store.put_file("bench/warm", &small).await?;
    }
    for round in 0..a.rounds {
        for s in servers.iter_mut() {
            let ops = small_round(&s.store, &a, &small, round).await?;
            let mbs = large_round(&s.store, &large, &md5, round).await?;
            eprintln!(
                "  round {round} {:<9}: {ops:>7.0} objects/s, {mbs:>6.0} MB/s",
                s.name
            );
            s.small.push(ops);
            s.large.push(mbs);
        }
    }
    drop(node);
    drop(sw);
    let _ = std::fs::remove_dir_all(&root);
    if a.json {
        let v: serde_json::Value = servers
            .iter()
            .map(|s| {
                (
                    s.name.to_string(),
                    serde_json::json!({"objects_per_s": median(&s.small), "mb_per_s": median(&s.large)}),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into();
        println!("{v}");
    } else {
        println!(
            "S3 uploads, median of {} rounds: {} objects of {} bytes from {} uploaders; one {} MiB object in 16 MiB parts",
            a.rounds, a.objects, a.object_bytes, a.concurrency, a.large_mib
        );
        println!("{:<10} {:>12} {:>10}", "server", "objects/s", "MB/s");
        for s in &servers {
            println!(
                "{:<10} {:>12.0} {:>10.0}",
                s.name,
                median(&s.small),
                median(&s.large)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
