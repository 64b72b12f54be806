//! Every real OSCAR/SCAR FDL file of `tests/fixtures/fdl/` loads, with the services and
//! providers that an independent reader (PyYAML, `tests/fixtures/conformance-expected.tsv`) finds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fogd::fdl::graph::{self, Certainty};
use fogd::fdl::{load_file, Dialect, LoadOptions, Platform, Report};

fn conformance_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/fdl");
    assert!(
        dir.join("MANIFEST.tsv").is_file(),
        "the conformance files are expected in {}",
        dir.display()
    );
    dir
}

fn schema_only(name: &str) -> Report {
    let r = load_file(
        &conformance_dir().join(name),
        LoadOptions {
            schema_only: true,
            ..Default::default()
        },
    );
    let errors: Vec<String> = r.errors().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "{name}: {errors:#?}");
    r
}

/// file -> (services, providers) from the fixture.
fn expected() -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/conformance-expected.tsv");
    let text = std::fs::read_to_string(&path).expect("fixture");
    let split = |s: &str| {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect::<Vec<_>>()
    };
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols[0].to_string(), (split(cols[1]), split(cols[2])))
        })
        .collect()
}

#[test]
fn every_manifest_file_loads_with_the_expected_services_and_providers() {
    let dir = conformance_dir();
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).expect("manifest");
    let listed: Vec<&str> = manifest
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .collect();
    assert_eq!(listed.len(), 69, "MANIFEST.tsv lists 69 files");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(
        on_disk, sorted,
        "every YAML file on disk is in the MANIFEST and vice versa"
    );

    let expected = expected();
    assert_eq!(expected.len(), 69);
    for name in listed {
        let r = schema_only(name);
        let wf = r.workflow.as_ref().expect("workflow");
        let (svcs, provs) = &expected[name];
        let got_svcs: Vec<String> = wf.services.iter().map(|s| s.name.clone()).collect();
        assert_eq!(&got_svcs, svcs, "{name}: services");
        let mut got_provs: Vec<String> = wf.providers.iter().map(|p| p.reference.to_string()).collect();
        got_provs.sort();
        assert_eq!(&got_provs, provs, "{name}: providers");
    }
}

#[test]
fn oscar_mask_detector_workflow_is_a_two_node_chain() {
    for name in [
        "grycap_oscar__examples__mask-detector-workflow__mask-detector-workflow.yaml",
        "grycap_oscar__examples__mask-detector-workflow__mask-detector-workflow.yaml.at-b88c3eef.yaml",
    ] {
        let r = schema_only(name);
        let wf = r.workflow.expect("workflow");
        assert_eq!(wf.dialect, Dialect::Oscar);
        let g = graph::build(&wf);
        assert_eq!(g.services, ["anon-and-split", "mask-detector"]);
        assert_eq!(g.edges.len(), 1, "{name}: {:?}", g.edges);
        let e = &g.edges[0];
        assert_eq!((e.from, e.to, e.certainty), (0, 1, Certainty::Always));
        assert_eq!(e.via.to_string(), "minio.default:mask-detector/intermediate");
        let entries: Vec<String> = g.entry_points.iter().map(|p| p.binding.to_string()).collect();
        assert_eq!(entries, ["minio.default:mask-detector/input"]);
        let results: Vec<String> = g.results.iter().map(|p| p.binding.to_string()).collect();
        assert_eq!(results, ["minio.default:mask-detector/result"]);
        assert!(g.cycles.is_empty());
    }
}

#[test]
fn scar_hybrid_mask_detector_links_oscar_to_lambda_through_s3() {
    let r = schema_only("grycap_scar__examples__mask-detector-workflow__scar-mask-detector-workflow.yaml");
    let wf = r.workflow.expect("workflow");
    assert_eq!(wf.dialect, Dialect::Hybrid);
    assert!(matches!(wf.services[0].platform, Platform::Oscar { .. }));
    assert_eq!(wf.services[1].platform, Platform::AwsLambda);
    let g = graph::build(&wf);
    assert_eq!(g.services, ["oscar-anon-and-split", "scar-mask-detector"]);
    assert_eq!(g.edges.len(), 1, "{:?}", g.edges);
    let e = &g.edges[0];
    assert_eq!((e.from, e.to), (0, 1));
    // The OSCAR side writes through `s3.my_s3`, the Lambda reads through `s3`: one AWS bucket.
    assert_eq!(e.via.to_string(), "s3.my_s3:scar-mask-detector/intermediate");
    let results: Vec<String> = g.results.iter().map(|p| p.binding.to_string()).collect();
    assert_eq!(
        results,
        [
            "minio.default:oscar-anon-and-split/output",
            "s3.default:scar-mask-detector/result"
        ]
    );
}

#[test]
fn tolerated_quirks_are_read_and_reported() {
    // Trailing TABs (strict YAML parsers refuse them).
    for name in [
        "grycap_oscar__examples__simple-test__simple-test.yaml",
        "grycap_oscar__examples__yolov8__yolov8.yaml",
    ] {
        let r = schema_only(name);
        assert_eq!(r.workflow.expect("wf").services.len(), 1);
    }
    // Unknown key: a warning naming the key, its path and its line.
    let r = schema_only("grycap_oscar__examples__fish-detector-replicas__fish-eu.yaml");
    let w: Vec<String> = r.warnings().map(ToString::to_string).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains(":26:5: clusters.oscar-us.memory: unknown key `memory`"),
        "{w:?}"
    );
    // Old `replicas` become a delegation to the declared cluster.
    let wf = r.workflow.expect("wf");
    let d = wf.services[0].delegation.as_ref().expect("delegation");
    assert_eq!(d.policy, "static");
    assert_eq!(d.members[0].cluster_id.as_deref(), Some("oscar-us"));
    // `Variables` (old) and `variables` (new) both fill the environment.
    let old = schema_only("grycap_oscar__examples__cowsay__cowsay.yaml");
    assert_eq!(
        old.workflow.expect("wf").services[0]
            .env
            .get("INPUT_TYPE")
            .map(String::as_str),
        Some("json")
    );
    // `cpu: 1.0` as a float and `cpu: '1.0'` as a string are the same.
    let f = schema_only("grycap_oscar__examples__fire-detection__fire_detection_replicas.yaml");
    let s = &f.workflow.expect("wf").services[0];
    assert_eq!(s.cpu_millis, Some(1000));
    assert_eq!(s.memory_bytes, Some(1 << 30));
    // The pre-2020 SCAR schema is read, with a warning.
    let legacy = schema_only("grycap_scar__test__functional__parser__fdl.yaml");
    assert!(legacy.warnings().any(|d| d.message.contains("pre-2020 SCAR")));
    let wf = legacy.workflow.expect("wf");
    assert_eq!(wf.dialect, Dialect::LegacyScar);
    assert_eq!(wf.services[0].outputs[0].suffix, ["wav", "srt"]);
}
