//! What these tests share.
#![allow(dead_code, unused_imports)]

pub use std::collections::{BTreeMap, BTreeSet};
pub use std::path::Path;
pub use std::time::{Duration, Instant};

pub use crate::common::{workflow, FogdNode, SeaweedFs, S3_KEY, S3_SECRET};
pub use fogd::journal::{Invocation, State};

pub const BURST: usize = 50;

pub const WORK: &str = "#!/bin/sh
sleep 0.2
name=$(basename \"$INPUT_FILE_PATH\")
{ echo \"result of $name\"; cat \"$INPUT_FILE_PATH\"; } > \"$TMP_OUTPUT_DIR/$name.out\"
";
pub const TALLY: &str = "#!/bin/sh
cp \"$INPUT_FILE_PATH\" \"$TMP_OUTPUT_DIR/\"
";

pub struct TmpPath(pub std::path::PathBuf);

impl TmpPath {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fogd"))
}

pub fn content(name: &str) -> Vec<u8> {
    format!("input {name}\n").into_bytes()
}

pub fn expected(name: &str) -> Vec<u8> {
    format!("result of {name}\ninput {name}\n").into_bytes()
}

pub fn cloud_fdl(shared: &str, input: &str, out: &str) -> String {
    format!(
        "functions:
  oscar:
  - cloud:
      name: work
      image: x
      script: work.sh
      input: [{{storage_provider: {input}}}]
      output: [{{storage_provider: minio.shared, path: {out}}}]
{shared}"
    )
}

pub fn edge_fdl(shared: &str, replicas: &str, out: &str, clusters: &str) -> String {
    format!(
        "functions:
  oscar:
  - edge:
      name: work
      image: x
      script: work.sh
      input: [{{storage_provider: minio, path: work/in}}]
      output: [{{storage_provider: minio.shared, path: {out}}}]
{replicas}
  - edge:
      name: tally
      image: x
      script: tally.sh
      input: [{{storage_provider: minio.shared, path: {out}}}]
      output: [{{storage_provider: minio, path: tally}}]
{clusters}{shared}"
    )
}

/// The `work` invocations on `prefix`-named inputs, once all of them have ended.
pub async fn wait_burst(node: &FogdNode, prefix: &str, n: usize, secs: u64) -> Vec<Invocation> {
    let j = node.journal();
    let t0 = Instant::now();
    loop {
        let rows: Vec<Invocation> = j
            .invocations(Some("work"), 100_000)
            .expect("list")
            .into_iter()
            .filter(|i| i.key.rsplit('/').next().is_some_and(|k| k.starts_with(prefix)))
            .collect();
        if rows.len() == n && rows.iter().all(|i| i.state.is_final()) {
            return rows;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "burst {prefix} not done in {secs} s: {:?}",
            rows.iter()
                .map(|i| format!(
                    "{} {} {:?}",
                    i.state.as_str(),
                    i.ran_on.as_deref().unwrap_or("local"),
                    i.error
                ))
                .collect::<BTreeSet<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// First start to last end, from the journal.
pub fn makespan(rows: &[Invocation]) -> f64 {
    let start = rows.iter().map(|i| i.created_ms).min().unwrap_or(0);
    let end = rows.iter().filter_map(|i| i.finished_ms).max().unwrap_or(0);
    (end - start) as f64 / 1000.0
}

pub fn where_counts(rows: &[Invocation]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for i in rows {
        *m.entry(i.ran_on.clone().unwrap_or_else(|| "local".into()))
            .or_default() += 1;
    }
    m
}
