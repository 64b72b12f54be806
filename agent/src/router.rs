//! Event -> services: the input bindings (provider, path, prefix/suffix) that an object matches.
//! Pure: no I/O.

use crate::fdl::{ProviderRef, Service};

/// The services that an object `key` (`bucket/...`) landing in `provider` triggers, in FDL order.
/// Keys ending in `/` are folder markers and trigger nothing. Long-running (`expose`) services
/// are not triggered by files.
pub fn route<'a>(services: &'a [Service], provider: &ProviderRef, key: &str) -> Vec<&'a str> {
    if key.ends_with('/') {
        return Vec::new();
    }
    services
        .iter()
        .filter(|s| !s.exposed)
        .filter(|s| {
            s.inputs
                .iter()
                .any(|b| &b.provider == provider && b.matches_key(key))
        })
        .map(|s| s.name.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::fdl::{load_str, LoadOptions};

    const WF: &str = "functions:
  oscar:
  - c:
      name: frames
      image: x
      script: s.sh
      input: [{storage_provider: minio, path: v/in}]
      output: [{storage_provider: minio, path: v/out}]
  - c:
      name: jpegs
      image: x
      script: s.sh
      input: [{storage_provider: minio, path: v/out, suffix: [.jpg]}]
  - c:
      name: thumbs
      image: x
      script: s.sh
      input: [{storage_provider: minio, path: v/out, prefix: [thumb_]}]
";

    #[test]
    fn routes_by_provider_path_prefix_and_suffix() {
        let r = load_str(
            WF,
            Path::new("wf.yaml"),
            LoadOptions {
                schema_only: true,
                ..Default::default()
            },
        );
        let wf = r.workflow.expect("wf");
        let minio = ProviderRef::parse("minio").expect("p");
        assert_eq!(route(&wf.services, &minio, "v/in/a.mp4"), ["frames"]);
        assert_eq!(route(&wf.services, &minio, "v/in/sub/a.mp4"), ["frames"]);
        assert_eq!(route(&wf.services, &minio, "v/out/a.jpg"), ["jpegs"]);
        assert_eq!(
            route(&wf.services, &minio, "v/out/thumb_a.jpg"),
            ["jpegs", "thumbs"]
        );
        assert!(route(&wf.services, &minio, "v/out/a.png").is_empty());
        assert!(route(&wf.services, &minio, "v/in/").is_empty(), "folder marker");
        assert!(
            route(&wf.services, &minio, "v/inx/a.mp4").is_empty(),
            "sibling folder"
        );
        assert!(
            route(&wf.services, &minio, "v/in").is_empty(),
            "the folder itself"
        );
        let other = ProviderRef::parse("s3.x").expect("p");
        assert!(
            route(&wf.services, &other, "v/in/a.mp4").is_empty(),
            "other provider"
        );
    }
}
