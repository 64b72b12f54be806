//! The FaaS Supervisor contract: what a script sees (environment, event JSON) and where its
//! outputs go. Pure: no I/O.

use std::path::Path;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::fdl::{IoBinding, ProviderRef, Service};

/// What the environment is built from.
pub struct Invocation<'a> {
    pub service: &'a Service,
    pub job_uuid: &'a str,
    pub node: &'a str,
    pub provider: &'a str,
    /// `bucket/folder/file`.
    pub key: &'a str,
    pub size: u64,
    pub etag: &'a str,
    pub event_time: &'a str,
    pub tmp_input_dir: &'a Path,
    pub tmp_output_dir: &'a Path,
    /// Where the input was downloaded; `None` with `file_stage_in: true`.
    pub input_file: Option<&'a Path>,
}

/// The variables a script gets, in OSCAR's names. The service's own variables come after the
/// contract's, and secrets last, as OSCAR's Job spec orders them.
pub fn environment(inv: &Invocation) -> Vec<(String, String)> {
    let (_, object_key) = split_key(inv.key);
    let mut env: Vec<(String, String)> = vec![
        ("TMP_INPUT_DIR".into(), inv.tmp_input_dir.display().to_string()),
        ("TMP_OUTPUT_DIR".into(), inv.tmp_output_dir.display().to_string()),
        ("STORAGE_OBJECT_KEY".into(), object_key.to_string()),
        ("EVENT".into(), event_json(inv)),
        ("EVENT_TIME".into(), inv.event_time.to_string()),
        ("JOB_UUID".into(), inv.job_uuid.to_string()),
        ("RESOURCE_ID".into(), inv.node.to_string()),
        ("OSCAR_SERVICE_NAME".into(), inv.service.name.clone()),
    ];
    if let Some(p) = inv.input_file {
        env.push(("INPUT_FILE_PATH".into(), p.display().to_string()));
    }
    if let Some(l) = &inv.service.log_level {
        env.push(("LOG_LEVEL".into(), l.clone()));
    }
    for (k, v) in inv.service.env.iter().chain(&inv.service.secrets) {
        env.push((k.clone(), v.clone()));
    }
    env
}

/// `quote_plus`-style encoding, as MinIO sends keys (the supervisor applies `unquote_plus`).
const KEY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The MinIO bucket-notification event for the object, as OSCAR's supervisor receives it.
pub fn event_json(inv: &Invocation) -> String {
    let (bucket, object_key) = split_key(inv.key);
    let encoded = utf8_percent_encode(object_key, KEY_ENCODE).to_string();
    serde_json::json!({
        "EventName": "s3:ObjectCreated:Put",
        "Key": inv.key,
        "Records": [{
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": "",
            "eventTime": inv.event_time,
            "eventName": "s3:ObjectCreated:Put",
            "userIdentity": {"principalId": "fogd"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-fogd-provider": inv.provider, "x-fogd-node": inv.node},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "Config",
                "bucket": {"name": bucket, "ownerIdentity": {"principalId": "fogd"}, "arn": format!("arn:aws:s3:::{bucket}")},
                "object": {"key": encoded, "size": inv.size, "eTag": inv.etag, "sequencer": inv.job_uuid}
            },
            "source": {"userAgent": "fogd", "host": "", "port": ""}
        }]
    })
    .to_string()
}

/// `bucket/rest` -> (`bucket`, `rest`).
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or((key, ""))
}

/// The file name the input gets in TMP_INPUT_DIR: the key's last segment.
pub fn input_file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// Every (provider, key) an output file at `rel` (relative to TMP_OUTPUT_DIR, `/`-separated)
/// is stored at: one per `output` entry whose prefix and suffix lists match.
pub fn output_targets(outputs: &[IoBinding], rel: &str) -> Vec<(ProviderRef, String)> {
    outputs
        .iter()
        .filter(|o| o.matches_relative(rel))
        .map(|o| (o.provider.clone(), o.output_key(rel)))
        .collect()
}

/// What the supervisor says on stderr when the kernel killed a process of its container for
/// memory: where the runtime does not report OOM kills (conmon on hybrid cgroups), fogd finds
/// this line in the container's log.
pub const OOM_NOTE: &str =
    "[fogd supervise] out of memory: the kernel killed a process of the script (over the memory limit)";

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::fdl::{Platform, ProviderKind};

    fn svc() -> Service {
        let b = |path: &str, suffix: &[&str]| IoBinding {
            provider: ProviderRef::new(ProviderKind::Minio, "default"),
            path: path.into(),
            prefix: vec![],
            suffix: suffix.iter().map(|s| s.to_string()).collect(),
        };
        Service {
            name: "anon".into(),
            platform: Platform::Oscar {
                cluster_id: "c".into(),
            },
            image: None,
            script: None,
            memory_bytes: None,
            cpu_millis: None,
            log_level: Some("CRITICAL".into()),
            timeout_s: None,
            inputs: vec![b("mask/in", &[])],
            outputs: vec![b("mask/frames", &[".jpg"]), b("mask/meta", &[".json"])],
            env: BTreeMap::from([("A".into(), "1".into())]),
            secrets: BTreeMap::from([("S".into(), "x".into())]),
            exposed: false,
            file_stage_in: false,
            delegation: None,
            enable_gpu: false,
            image_pull_secrets: Vec::new(),
            mount: None,
            expose: None,
            volume: None,
        }
    }

    #[test]
    fn environment_follows_the_contract() {
        let s = svc();
        let (i, o, f) = (
            PathBuf::from("/t/in"),
            PathBuf::from("/t/out"),
            PathBuf::from("/t/in/my video.mp4"),
        );
        let inv = Invocation {
            service: &s,
            job_uuid: "anon-1",
            node: "pi",
            provider: "minio.default",
            key: "mask/in/cam 1/my video.mp4",
            size: 10,
            etag: "e",
            event_time: "2026-01-01T00:00:00Z",
            tmp_input_dir: &i,
            tmp_output_dir: &o,
            input_file: Some(&f),
        };
        let env: BTreeMap<String, String> = environment(&inv).into_iter().collect();
        assert_eq!(env["STORAGE_OBJECT_KEY"], "in/cam 1/my video.mp4");
        assert_eq!(env["INPUT_FILE_PATH"], "/t/in/my video.mp4");
        assert_eq!(env["TMP_OUTPUT_DIR"], "/t/out");
        assert_eq!(env["RESOURCE_ID"], "pi");
        assert_eq!((env["A"].as_str(), env["S"].as_str()), ("1", "x"));
        let ev: serde_json::Value = serde_json::from_str(&env["EVENT"]).expect("json");
        assert_eq!(ev["Records"][0]["s3"]["bucket"]["name"], "mask");
        assert_eq!(
            ev["Records"][0]["s3"]["object"]["key"],
            "in%2Fcam%201%2Fmy%20video.mp4"
        );
        assert_eq!(ev["Records"][0]["eventTime"], "2026-01-01T00:00:00Z");
        assert_eq!(input_file_name(inv.key), "my video.mp4");
    }

    #[test]
    fn outputs_keep_relative_paths_and_filter() {
        let s = svc();
        let t = output_targets(&s.outputs, "vid/img1.jpg");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].1, "mask/frames/vid/img1.jpg");
        assert_eq!(
            output_targets(&s.outputs, "vid/img1.json")[0].1,
            "mask/meta/vid/img1.json"
        );
        assert!(output_targets(&s.outputs, "log.txt").is_empty());
    }
}
