//! The units `fogd.yaml` takes: durations (`30s`, `10m`) and sizes (`512MiB`, `2GiB`).

/// A size in fogd.yaml: a number of bytes, or a string with a unit (`512MiB`, `2 GiB`, `1.5GB`;
/// binary units are powers of 1024, decimal ones powers of 1000).
pub(crate) mod byte_size {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Size::deserialize(d)? {
            Size::Bytes(n) => Ok(n),
            Size::Text(s) => s
                .trim()
                .parse::<bytesize::ByteSize>()
                .map(|b| b.as_u64())
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "`{s}` is not a size like `512MiB`, `2GiB` or a number of bytes: {e}"
                    ))
                }),
        }
    }

    /// As `deserialize`, for a size held in memory (`usize`).
    pub mod usize {
        use serde::Deserializer;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
            let n = super::deserialize(d)?;
            usize::try_from(n).map_err(|_| {
                serde::de::Error::custom(format!("{n} bytes is more than this machine can address"))
            })
        }
    }
}

pub(crate) mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!("`{s}` is not a duration like `30s` or `10m`: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn sizes_take_units_and_a_bad_one_names_itself() {
        let c = Config::parse(
            "min_free_bytes: 2GiB\nmax_output_bytes: 1.5 MB\nmax_work_bytes: 1048576\nsync: {quota_bytes: 512MiB}\n\
             mqtt: {max_frame_bytes: 8MiB}\ngateway: {max_body_bytes: 64KiB}\n",
        )
        .expect("parse");
        assert_eq!(c.min_free_bytes, 2 << 30);
        assert_eq!(c.max_output_bytes, 1_500_000);
        assert_eq!(c.max_work_bytes, 1 << 20);
        assert_eq!(c.sync.quota_bytes, 512 << 20);
        assert_eq!(c.mqtt.as_ref().map(|m| m.max_frame_bytes), Some(8 << 20));
        assert_eq!(c.gateway.max_body_bytes, 64 << 10);
        let bad = Config::parse("min_free_bytes: 2 gallons\n").expect_err("bad unit");
        assert!(
            bad.contains("min_free_bytes") && bad.contains("2 gallons"),
            "{bad}"
        );
    }

    #[test]
    fn models_dir_is_relative_to_the_config_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("fogd.yaml");
        std::fs::write(&path, "models_dir: models\n").expect("write");
        let c = Config::load(&path).expect("load");
        assert_eq!(c.models_dir, Some(dir.path().join("models")));
    }
}
