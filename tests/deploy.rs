//! The k3s manifests validate against the Kubernetes schemas offline (`kubernetes-validate
//! --strict`, from the venv), every file of the kustomization is there, and the fogd.yaml they
//! carry is a config fogd accepts. No API server runs here: nothing is applied to a cluster.

use std::path::{Path, PathBuf};
use std::process::Command;

fn k3s() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k3s")
}

fn resources() -> Vec<PathBuf> {
    let k: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(k3s().join("kustomization.yaml")).expect("kustomization"),
    )
    .expect("yaml");
    k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| k3s().join(r.as_str().expect("name")))
        .collect()
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    let validator = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/kubernetes-validate");
    assert!(
        validator.exists(),
        "{} missing: run scripts/setup",
        validator.display()
    );
    let files = resources();
    assert_eq!(files.len(), 7);
    let out = Command::new(&validator)
        .arg("--strict")
        .args(&files)
        .output()
        .expect("validate");
    let text = crate::common::text(&out);
    assert!(out.status.success(), "{text}");
    for kind in [
        "namespace/fogd",
        "role/fogd-executor",
        "deployment/fogd",
        "service/fogd",
        "persistentvolumeclaim/fogd-data",
        "networkpolicy/fogd",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}")),
            "{kind}: {text}"
        );
    }
}

#[test]
fn the_configmap_holds_a_config_fogd_accepts() {
    let cm: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(k3s().join("config.yaml")).expect("config"))
            .expect("yaml");
    let cfg =
        fogd::config::Config::parse(cm["data"]["fogd.yaml"].as_str().expect("fogd.yaml")).expect("valid");
    assert_eq!(cfg.data_dir, Path::new("/var/lib/fogd"));
    assert_eq!(cfg.gateway.listen, "0.0.0.0:8080");
    // On k3s every service runs as a Job, and the pods reach fogd through its Service.
    assert_eq!(cfg.executor, fogd::config::ExecutorKind::Kube);
    assert_eq!(cfg.kube.gateway_url, "http://fogd.fogd.svc:8080");
    let svc: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(k3s().join("service.yaml")).expect("service"))
            .expect("yaml");
    assert_eq!(svc["metadata"]["name"], "fogd");
    assert_eq!(svc["metadata"]["namespace"], "fogd");
    // The Role grants what the executor calls: Jobs, pods, pod logs, ConfigMaps (patched).
    let rbac = std::fs::read_to_string(k3s().join("rbac.yaml")).expect("rbac");
    for want in ["\"jobs\"", "\"pods/log\"", "\"configmaps\"", "\"patch\""] {
        assert!(rbac.contains(want), "rbac.yaml lacks {want}");
    }
    // The same for the systemd service's config.
    let arm = std::fs::read_to_string(k3s().join("../arm64/fogd.yaml")).expect("arm64 config");
    fogd::config::Config::parse(&arm).expect("valid");
}

/// The Deployment is hardened (issue 20): non-root, no privilege escalation, no capabilities,
/// the runtime's seccomp profile, a read-only root; liveness tied to the scheduler; time to
/// drain; traffic in only to the API.
#[test]
fn the_deployment_is_locked_down() {
    let yaml = |name: &str| -> serde_json::Value {
        serde_saphyr::from_str(&std::fs::read_to_string(k3s().join(name)).expect(name)).expect("yaml")
    };
    let d = yaml("deployment.yaml");
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    // fogd's default drain_timeout is 60 s.
    assert!(pod["terminationGracePeriodSeconds"].as_u64().expect("grace") >= 60);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health/live");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    let np = yaml("networkpolicy.yaml");
    assert_eq!(np["kind"], "NetworkPolicy");
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], 8080);
}
