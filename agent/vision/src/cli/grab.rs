//! `fogd-vision grab`: frames of a live stream (or a file, read through) as JPEGs on stdout, for
//! `fogd run`'s `ingest.streams`. Decoded in this process through libav, keyframes only while the
//! stream's keyframe interval allows (see `media::libav::sample_live`): a 1080p25 camera sampled every
//! 5 s costs a keyframe decode every 5 s, not 125 frames as an `ffmpeg -vf fps` pipe would.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use fogd_log::redact_credentials;

#[derive(Debug, clap::Args)]
pub struct GrabArgs {
    /// rtsp://, http://, ... or a video file.
    pub url: String,
    /// One frame every this long, by the stream's own clock.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub every: Duration,
    /// JPEG quality of the frames.
    #[arg(long, default_value_t = 90)]
    pub quality: i32,
}

/// What each JPEG carries in a COM segment (`jpeg_note`), for whoever takes the frame on.
#[derive(serde::Serialize)]
struct Note<'a> {
    source: &'a str,
    /// Seconds since the first frame taken, by the stream's timestamps.
    stream_time_s: f64,
    /// When the camera took it (RFC 3339, ms): from RTCP when the stream says, else its
    /// arrival here.
    captured_at: String,
    keyframe: bool,
}

pub fn grab(a: &GrabArgs) -> anyhow::Result<ExitCode> {
    if a.every.is_zero() {
        anyhow::bail!("--every: must be more than 0");
    }
    let url_shown = redact_credentials(&a.url);
    let src = crate::media::libav::Source::open(&a.url)
        .map_err(|e| anyhow::anyhow!(redact_credentials(&e.to_string())))?;
    tracing::info!(
        url = %url_shown,
        width = src.info.width,
        height = src.info.height,
        codec = %src.info.codec,
        "stream opened"
    );
    let pool = crate::media::FramePool::default();
    let mut out = std::io::stdout().lock();
    let mut failure: Option<anyhow::Error> = None;
    let stats = crate::media::libav::sample_live(src, a.every.as_secs_f64(), &pool, &mut |f| {
        let r = (|| -> anyhow::Result<()> {
            let jpeg = crate::media::encode_image(std::path::Path::new("frame.jpg"), &f.image, a.quality)?;
            let note = serde_json::to_vec(&Note {
                source: &url_shown,
                stream_time_s: (f.timestamp_s * 1000.0).round() / 1000.0,
                captured_at: humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + Duration::from_secs_f64(f.captured_at.max(0.0)),
                )
                .to_string(),
                keyframe: f.keyframe,
            })?;
            let jpeg = crate::jpeg_note::embed(&jpeg, &note).unwrap_or(jpeg);
            out.write_all(&jpeg).context("stdout")?;
            out.flush().context("stdout")?;
            Ok(())
        })();
        pool.give(f.image);
        match r {
            Ok(()) => true,
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    })
    .map_err(|e| anyhow::anyhow!(redact_credentials(&e.to_string())))?;
    tracing::info!(
        url = %url_shown,
        frames = stats.frames,
        decoded = stats.decoded,
        packets = stats.packets,
        "stream ended"
    );
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(ExitCode::SUCCESS)
}
