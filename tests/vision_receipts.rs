//! Signed receipts (issue 32): a node runs the example S3 workflow (the real anonymiser and mask
//! detector) with a real SeaweedFS as the next tier, fed by its watched folder. Every frame it
//! uploads carries its node's receipt, in the JPEG and in the object's metadata (read back with
//! boto3); `fogd verify` passes on each and fails on a frame with one pixel changed, on another
//! node's key and on a raw frame renamed; a service that re-encodes raw frames is refused by the
//! outbox.

use crate::common;
use crate::vision_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use vision_support::{fogd_bin, fogd_env, sample_clip, text};

const NODE: &str = "edge-r";

/// A service beside the example's that re-encodes each raw frame (a comment segment added, so
/// not byte for byte the raw item) and sends it to the next tier: the outbox must refuse it.
const REENCODE: &str = "{ head -c 2 \"$INPUT_FILE_PATH\"; printf '\\377\\376\\000\\005abc'; \
                        tail -c +3 \"$INPUT_FILE_PATH\"; } > \"$TMP_OUTPUT_DIR/copy.jpg\"\n";

/// A hostile service: the real anonymiser's frame with the raw frame appended after its end, the
/// raw frame with a forged "no faces" report in it, and the real anonymiser's frame of a copy it
/// made of the raw frame (colours inverted: the detector finds nothing, the receiver inverts it
/// back), and the real anonymiser's frame made blind (a threshold no face reaches). None may get
/// a receipt or leave.
const FORGER: &str = r#"fogd anonymize "$INPUT_FILE_PATH" --out "$TMP_OUTPUT_DIR/a" >/dev/null
fogd anonymize "$INPUT_FILE_PATH" --thresh 0.95 --out "$TMP_OUTPUT_DIR/t" >/dev/null
for f in "$TMP_OUTPUT_DIR"/a/*.jpg; do cat "$INPUT_FILE_PATH" >> "$f"; done
ffmpeg -loglevel error -y -i "$INPUT_FILE_PATH" -vf negate "$TMP_INPUT_DIR/neg.jpg"
fogd anonymize "$TMP_INPUT_DIR/neg.jpg" --out "$TMP_OUTPUT_DIR/n" >/dev/null
python3 - "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/forged.jpg" <<'PY'
import sys
raw = open(sys.argv[1], "rb").read()
body = (b"fogd-report/1\n" b'{"source":"x","width":512,"height":600,"detector":"centerface",'
        b'"backend":"onnxruntime","status":"ok","faces":[],'
        b'"counts":{"faces":0,"mask":0,"no_mask":0,"no_mask_share":0.0}}')
seg = b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body
open(sys.argv[2], "wb").write(raw[:2] + seg + raw[2:])
PY
"#;

/// A service that asks the node's vision worker (which runs outside the scripts' sandbox) to
/// write into the node's data folder, over the camera's snapshot; to draw on a picture in another
/// invocation's folder (detect-masks copies a raw picture whole), directly and through a report
/// of its own whose picture is a link there; to read a file through a libav protocol, and a
/// FIFO (which would hold the worker); and to work with a token it made up. The worker refuses
/// them all.
const SNOOPER: &str = r#"fogd anonymize "$INPUT_FILE_PATH" --out "$DATA/snapshots"
fogd detect-masks "$DATA/work/elsewhere/secret.jpg" --out "$TMP_OUTPUT_DIR/peek"
echo '{"source":"x","width":1,"height":1,"detector":"centerface","backend":"x","status":"ok","faces":[],"counts":{"faces":0,"mask":0,"no_mask":0,"no_mask_share":0.0}}' > "$TMP_INPUT_DIR/x.json"
ln -s "$DATA/work/elsewhere/secret.jpg" "$TMP_INPUT_DIR/x.jpg"
fogd detect-masks "$TMP_INPUT_DIR/x.json" --out "$TMP_OUTPUT_DIR/peek2"
fogd anonymize "file:$INPUT_FILE_PATH" --out "$TMP_OUTPUT_DIR/p"
mkfifo "$TMP_INPUT_DIR/fifo.jpg"
fogd anonymize "$TMP_INPUT_DIR/fifo.jpg" --out "$TMP_OUTPUT_DIR/f"
FOGD_VISION_TOKEN=$(printf '%064d' 7) fogd anonymize "$INPUT_FILE_PATH" --out "$TMP_OUTPUT_DIR/t"
"#;

/// A service that anonymises its input for real but turns the node's live audit off, by flag and
/// by variable: the node's rate holds (the worker takes it from the invocation's grant).
const QUIET: &str = "FOGD_PRIVACY_AUDIT_EVERY=0 fogd anonymize \"$INPUT_FILE_PATH\" --audit-every 0 \
                     --out \"$TMP_OUTPUT_DIR\"\n";

/// A service that writes mask verdicts for the camera's frames: one made up, one the real
/// detector judged from another picture (the frame's colours inverted), one it judged blind (a
/// threshold no face reaches: "Safe"). Its camera counts none; nor the verdicts of a second
/// judge of the anonymised frames (each frame is counted once).
const LIAR: &str = r#"printf '%s' '{"from":"detection","counts":{"faces":9,"mask":0,"no_mask":9,"no_mask_share":1.0},"status":"Danger"}' > "$TMP_OUTPUT_DIR/made-up.masks.json"
ffmpeg -loglevel error -y -i "$INPUT_FILE_PATH" -vf negate "$TMP_INPUT_DIR/neg.jpg"
fogd detect-masks "$TMP_INPUT_DIR/neg.jpg" --out "$TMP_INPUT_DIR/m" >/dev/null
fogd detect-masks "$INPUT_FILE_PATH" --thresh 1 --out "$TMP_INPUT_DIR/b" >/dev/null
cp "$TMP_INPUT_DIR/m/neg.masks.json" "$TMP_OUTPUT_DIR/"
cp "$TMP_INPUT_DIR"/b/*.masks.json "$TMP_OUTPUT_DIR/blind.masks.json"
"#;

fn workflow(dir: &Path, endpoint: &str, data: &Path) -> PathBuf {
    let example = repo().join("examples/camera-ingest");
    for script in ["anon-and-split.sh", "mask-detector.sh"] {
        std::fs::copy(example.join(script), dir.join(script)).unwrap();
    }
    std::fs::write(dir.join("reencode.sh"), REENCODE).unwrap();
    std::fs::write(dir.join("forger.sh"), FORGER).unwrap();
    std::fs::write(dir.join("snooper.sh"), SNOOPER).unwrap();
    std::fs::write(dir.join("quiet.sh"), QUIET).unwrap();
    std::fs::write(dir.join("liar.sh"), LIAR).unwrap();
    let fdl = std::fs::read_to_string(example.join("workflow-s3.yaml")).unwrap();
    let (functions, _) = fdl.split_once("storage_providers:").expect("providers");
    let copier = "  - edge:\n      name: reencode\n      image: alpine\n      script: reencode.sh\n      \
                  input:\n      - storage_provider: minio.default\n        path: cameras/incoming\n        \
                  suffix: [.jpg]\n      output:\n      - storage_provider: minio.next\n        path: fogd-edge/leak\n";
    let forger = copier
        .replace("reencode", "forger")
        .replace("fogd-edge/leak", "fogd-edge/forged");
    let quiet = copier
        .replace("reencode", "quiet")
        .replace("fogd-edge/leak", "fogd-edge/quiet");
    let liar = copier
        .replace("reencode", "liar")
        .replace("fogd-edge/leak", "fogd-edge/lies");
    let judge2 = copier
        .replace("name: reencode", "name: judge2")
        .replace("reencode.sh", "mask-detector.sh")
        .replace("cameras/incoming", "cameras/anonymised")
        .replace("fogd-edge/leak", "fogd-edge/judge2");
    let snooper = copier
        .replace("reencode", "snooper")
        .replace("fogd-edge/leak", "fogd-edge/snoop")
        + &format!(
            "      environment:\n        Variables:\n          DATA: {}\n",
            data.display()
        );
    let providers = format!(
        "storage_providers:\n  minio:\n    next:\n      endpoint: {endpoint}\n      region: us-east-1\n      \
         access_key: {S3_KEY}\n      secret_key: {S3_SECRET}\n"
    );
    let path = dir.join("workflow.yaml");
    std::fs::write(
        &path,
        format!("{functions}{copier}{forger}{snooper}{quiet}{liar}{judge2}{providers}"),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_uploaded_frame_carries_a_receipt_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sw = SeaweedFs::start(&d.join("weed"));
    let watch = d.join("watch");
    std::fs::create_dir_all(watch.join("door")).unwrap();
    let wf = workflow(d, &sw.endpoint, &d.join("node/data"));
    let extra = format!(
        "ingest:\n  path: cameras/incoming\n  watch_dir: {}\n  watch_interval: 200ms\nprivacy:\n  audit_every: 1\n\
         cameras:\n  door:\n    plates: true\n",
        watch.display()
    );
    let node = FogdNode::start(&fogd_bin(), &d.join("node"), NODE, &extra, Some(&wf));
    // A picture in another invocation's folder, which no other script may reach.
    let secret = d.join("node/data/work/elsewhere/secret.jpg");
    std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
    std::fs::write(&secret, face_jpeg()).unwrap();
    let cfg = node.dir.join("fogd.yaml");
    let log = || std::fs::read_to_string(node.dir.join("fogd.log")).unwrap_or_default();
    // A camera's photo and a 6 s clip (frames at 0 and 5 s).
    let raw = face_jpeg();
    std::fs::write(d.join("raw.jpg"), &raw).unwrap();
    let clip = d.join("clip.mp4");
    sample_clip(&clip, 6, 640, 360, &[]);
    std::fs::copy(&clip, watch.join("door/clip.mp4")).unwrap();
    std::fs::write(watch.join("door/photo.jpg"), &raw).unwrap();
    // Two cars: the camera sees vehicles, so their two plates are blurred and counted.
    let cars = repo().join("examples/camera-ingest/media/plates/alpr-test.jpg");
    std::fs::copy(cars, watch.join("door/cars.jpg")).unwrap();

    let s3 = s3_client(&sw.endpoint, "us-east-1", S3_KEY, S3_SECRET);
    let t0 = Instant::now();
    let (frames, verdicts) = loop {
        let frames: Vec<String> = list_keys(&s3, "fogd-edge", "anonymised/")
            .await
            .into_iter()
            .filter(|k| k.ends_with(".jpg"))
            .collect();
        let verdicts: Vec<String> = list_keys(&s3, "fogd-edge", "results/")
            .await
            .into_iter()
            .filter(|k| k.ends_with(".masks.jpg"))
            .collect();
        if frames.len() >= 4 && verdicts.len() >= 4 {
            break (frames, verdicts);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "uploaded {frames:?} {verdicts:?}: {}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    // 1. Every uploaded picture verifies, with the node's key as `fogd key` prints it.
    let key = fogd_env(&["--config", cfg.to_str().unwrap(), "key"], &[]);
    assert!(key.status.success(), "{}", text(&key));
    let public = String::from_utf8_lossy(&key.stdout).trim().to_string();
    let http = reqwest::Client::new();
    let info = node.api_json(&http, "/system/info").await;
    assert_eq!(info["fogd_receipt_key"]["ed25519"], public, "{info}");
    let got = d.join("got");
    std::fs::create_dir_all(&got).unwrap();
    let mut files = Vec::new();
    let mut tokens = Vec::new();
    for k in frames.iter().chain(&verdicts) {
        let o = s3.get_object().bucket("fogd-edge").key(k).send().await.unwrap();
        let bytes = o.body.collect().await.unwrap().into_bytes().to_vec();
        let f = got.join(k.replace('/', "_"));
        std::fs::write(&f, &bytes).unwrap();
        tokens.push(fogd::receipts::token_of(&bytes).expect("a receipt in the JPEG"));
        files.push(f);
    }
    let names: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    let mut args = vec!["verify", "--key", public.as_str()];
    args.extend(&names);
    let o = fogd_env(&args, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(text(&o).matches("ok    ").count(), files.len(), "{}", text(&o));
    // The node's own key by default; JSON says what each receipt states.
    let mut args = vec!["--config", cfg.to_str().unwrap(), "verify", "--json"];
    args.extend(&names);
    let o = fogd_env(&args, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let all: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    use sha2::Digest;
    let raw_sha = format!("{:x}", sha2::Sha256::digest(&raw));
    for v in all.as_array().unwrap() {
        let r = &v["receipt"];
        assert_eq!(
            (r["node"].as_str(), r["camera"].as_str()),
            (Some(NODE), Some("door")),
            "{r}"
        );
        assert_eq!(r["status"], "ok", "{r}");
        assert!(r["raw_sha256"].as_str().is_some_and(|s| s.len() == 64), "{r}");
        assert!(
            r["models"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["name"] == "centerface.onnx")),
            "{r}"
        );
        assert!(r["thresholds"]["redact"].as_f64().is_some(), "{r}");
        // The camera sees vehicles (`plates: true`): its plates were searched.
        assert!(
            r["models"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["name"] == "clp_det.onnx")),
            "{r}"
        );
        assert!(r["thresholds"]["plates"].as_f64().is_some(), "{r}");
    }
    // The live audit (`audit_every: 1`): every anonymised frame searched again by UltraFace,
    // nothing found after redaction, and counted for Prometheus.
    let audited: Vec<&serde_json::Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| !v["receipt"]["audit"].is_null())
        .collect();
    assert_eq!(audited.len(), frames.len(), "{all}");
    assert!(
        audited
            .iter()
            .all(|v| v["receipt"]["audit"] == serde_json::json!({"detector": "ultraface", "faces_left": 0})),
        "{all}"
    );
    let metrics = http
        .get(format!("{}/metrics", node.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // These frames at least (the quiet service's are audited too, and may be counted already).
    let audited_total: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("fogd_privacy_audited_frames_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        audited_total >= frames.len() as f64 && metrics.contains("fogd_privacy_faces_left_total 0"),
        "{metrics}"
    );
    // The cars' frame and its verdict picture state their two plates, which the camera counts.
    let with_plates = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["receipt"]["plates"].as_array().is_some_and(|p| p.len() == 2))
        .count();
    assert_eq!(with_plates, 2, "{all}");
    assert!(
        metrics.contains("fogd_camera_plates_total{camera=\"door\"} 2"),
        "{metrics}"
    );
    // The photo's frame and its verdict picture name the photo's SHA-256 as their raw item
    // (the verdict's passed on from the frame's receipt), and have its face.
    let photo: Vec<&serde_json::Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["receipt"]["raw_sha256"] == raw_sha.as_str())
        .collect();
    assert_eq!(photo.len(), 2, "{all}");
    assert!(
        photo
            .iter()
            .all(|v| !v["receipt"]["faces"].as_array().unwrap().is_empty()),
        "{all}"
    );

    // 2. The objects' metadata, as boto3 reads it: the same receipts.
    let mut args: Vec<std::ffi::OsString> = vec![
        sw.endpoint.clone().into(),
        S3_KEY.into(),
        S3_SECRET.into(),
        "fogd-edge".into(),
    ];
    args.extend(frames.iter().chain(&verdicts).map(Into::into));
    let argv: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let (ok, out) = run_python(&repo().join("tests/s3/receipt_meta.py"), &argv);
    assert!(ok, "{out}");
    let meta: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    for (k, token) in frames.iter().chain(&verdicts).zip(&tokens) {
        assert_eq!(meta[k], token.as_str(), "{k}: {meta}");
    }

    // 3. What must fail: one pixel changed, another node's key, a raw frame renamed.
    let frame = &files[0];
    let mut bytes = std::fs::read(frame).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0x01;
    let changed = d.join("changed.jpg");
    std::fs::write(&changed, &bytes).unwrap();
    let renamed = d.join("img1.jpg");
    std::fs::write(&renamed, &raw).unwrap();
    let other_key = fogd::receipts::NodeKey::load_or_create(&d.join("other"))
        .unwrap()
        .public_b64();
    // `fogd key` only reads a key: where no node ran, it says so and makes none.
    let none = fogd_env(&["--data-dir", d.join("none").to_str().unwrap(), "key"], &[]);
    assert!(
        !none.status.success() && text(&none).contains("no receipt key yet"),
        "{}",
        text(&none)
    );
    assert!(!d.join("none/receipt-key").exists());
    for (file, key, says) in [
        (
            &changed,
            public.as_str(),
            "the picture changed after it was signed",
        ),
        (frame, other_key.as_str(), "does not verify with key"),
        (&renamed, public.as_str(), "no fogd receipt"),
    ] {
        let o = fogd_env(&["verify", "--key", key, file.to_str().unwrap()], &[]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            text(&o).contains("FAIL") && text(&o).contains(says),
            "{says}: {}",
            text(&o)
        );
    }

    // 4. The re-encoded raw frame, the frame with the raw one appended and the raw frame with a
    // forged report never reached the next tier: the outbox refused them, and said why.
    let refusal = "leaves this node only with a valid fogd receipt";
    let t0 = Instant::now();
    let jobs_text = loop {
        let jobs = fogd_env(&["--config", cfg.to_str().unwrap(), "jobs", "--json"], &[]);
        let t = text(&jobs);
        let done = ["reencode", "forger"].iter().all(|svc| {
            let v: serde_json::Value = serde_json::from_slice(&jobs.stdout).unwrap_or_default();
            v.as_array().into_iter().flatten().any(|j| {
                j["service"] == *svc
                    && j["state"] == "failed"
                    && j["error"].as_str().is_some_and(|e| e.contains(refusal))
            })
        });
        if done {
            break t;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "not refused: {t}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        list_keys(&s3, "fogd-edge", "leak/").await.is_empty(),
        "a re-encoded raw frame was uploaded: {jobs_text}"
    );
    let forged: Vec<String> = list_keys(&s3, "fogd-edge", "forged/")
        .await
        .into_iter()
        .filter(|k| k.ends_with(".jpg"))
        .collect();
    assert!(
        forged.is_empty(),
        "forged frames were uploaded: {forged:?} {jobs_text}"
    );
    // The inverted copy's frame was the worker's, but not made from the invocation's input; the
    // blind one was made with a threshold over the node's policy.
    assert!(
        log().contains("was not made from this invocation's input"),
        "{}",
        log()
    );
    assert!(
        log().contains("below the node's policy: face threshold 0.95 is over 0.1"),
        "{}",
        log()
    );
    // The worker refused to write into the node's data folder for a script, to read another
    // invocation's picture, and a token fogd did not give.
    let t0 = Instant::now();
    loop {
        let logs = text(&fogd_env(
            &["--config", cfg.to_str().unwrap(), "logs", "snooper"],
            &[],
        ));
        let outside = "outside the invocation's own folders";
        if logs.contains(&format!(
            "--out {}: {outside}",
            d.join("node/data/snapshots").display()
        )) && logs.contains(&format!("image {}: {outside}", secret.display()))
            && logs.contains("FOGD_VISION_TOKEN: no such grant")
            && logs.contains("x.jpg: outside the invocation's own folders")
            && logs.contains("a protocol prefix is not taken")
            && logs.contains("fifo.jpg: not a regular file")
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the snooper was not refused: {logs}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(list_keys(&s3, "fogd-edge", "snoop/").await.is_empty());

    // 5. The quiet service's frames were audited all the same (`audit_every: 1`), and left.
    let t0 = Instant::now();
    let quiet = loop {
        let keys: Vec<String> = list_keys(&s3, "fogd-edge", "quiet/")
            .await
            .into_iter()
            .filter(|k| k.ends_with(".jpg"))
            .collect();
        if keys.len() >= 2 {
            break keys;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "quiet: {keys:?}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for k in &quiet {
        let o = s3.get_object().bucket("fogd-edge").key(k).send().await.unwrap();
        let bytes = o.body.collect().await.unwrap().into_bytes().to_vec();
        let token = fogd::receipts::token_of(&bytes).expect("a receipt");
        let f = got.join(format!("quiet-{}", k.replace('/', "_")));
        std::fs::write(&f, &bytes).unwrap();
        let o = fogd_env(
            &[
                "--config",
                cfg.to_str().unwrap(),
                "verify",
                "--json",
                f.to_str().unwrap(),
            ],
            &[],
        );
        assert!(o.status.success(), "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            v[0]["receipt"]["audit"]["detector"], "ultraface",
            "{k}: {token} {v}"
        );
    }

    // 6. The camera counts the detector's four verdicts only: none of the liar's (two frames,
    // three verdicts each), and each frame once (the second judge's are refused, or the first's).
    let t0 = Instant::now();
    while log().matches("not counted for its camera").count() < 6
        || log().matches("not counted again").count() < 4
    {
        assert!(t0.elapsed() < Duration::from_secs(60), "lies: {}", log());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let metrics = http.get(format!("{}/metrics", node.url)).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("fogd_camera_judged_frames_total{camera=\"door\"} 4"),
        "{metrics}"
    );
}
