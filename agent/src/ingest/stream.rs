//! Camera streams as a source (`ingest.streams`: RTSP, HTTP, anything FFmpeg reads): one JPEG
//! frame every `every`, spooled like an MQTT frame. The frames are taken by `fogd-vision grab`
//! (libav in its process, keyframes only while the keyframe interval allows: a 1080p25 camera
//! sampled every 5 s costs one keyframe decode per frame taken), or, where fogd-vision is not
//! installed, by an `ffmpeg` process (which decodes every frame for its rate filter). The
//! stream dropping is logged and retried with backoff.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::{spool_batch, Item};
use crate::config::{redact_credentials, StreamSource};
use crate::runtime::{stopped, Runtime};

/// Frames larger than this are cut streams or garbage, not camera frames.
const MAX_FRAME: usize = 32 << 20;

/// Reads `src` until `stop`, restarting the grabber when the stream ends or fails.
pub async fn run(rt: Arc<Runtime>, src: StreamSource, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut backoff = crate::backoff::Policy::new(Duration::from_secs(1), Duration::from_secs(60)).start();
    loop {
        let started = std::time::Instant::now();
        let r = tokio::select! {
            _ = stopped(&mut stop) => return,
            r = read_once(&rt, &src) => r,
        };
        // A stream that ran a minute was up: its next drop starts the waits again.
        if started.elapsed() > Duration::from_secs(60) {
            backoff.reset();
        }
        let wait = backoff.next_wait();
        match r {
            Ok(n) => {
                tracing::warn!(camera = %src.camera, url = %redact_credentials(&src.url), frames = n, "stream ended; reconnecting in {wait:?}")
            }
            Err(e) => {
                tracing::warn!(camera = %src.camera, url = %redact_credentials(&src.url), "stream: {e}; retrying in {wait:?}")
            }
        }
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The program that takes the frames, and its arguments: JPEGs one after another on stdout.
fn grabber(src: &StreamSource) -> Command {
    let every = format!("{}ms", src.every.as_millis().max(40));
    if let Some(vision) = crate::paths::vision_binary() {
        let mut cmd = Command::new(vision);
        cmd.args(["grab", "--every", &every]).arg(&src.url);
        return cmd;
    }
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
    if src.url.starts_with("rtsp://") {
        cmd.args(["-rtsp_transport", "tcp"]);
    }
    let fps = format!("fps=1/{}", src.every.as_secs_f64().max(0.04));
    cmd.arg("-i")
        .arg(&src.url)
        .args(["-vf", &fps, "-f", "image2pipe", "-c:v", "mjpeg", "-q:v", "3", "-"]);
    cmd
}

/// One session of the grabber: returns the frames taken when the stream ends.
async fn read_once(rt: &Arc<Runtime>, src: &StreamSource) -> std::io::Result<usize> {
    let mut cmd = grabber(src);
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start {program}: {e}")))?;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;
    let mut err = child
        .stderr
        .take()
        .ok_or_else(|| std::io::Error::other("no stderr"))?;
    let errors = tokio::spawn(async move {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s).await;
        s
    });
    let mut buf = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 256 * 1024];
    let mut frames = 0;
    loop {
        let n = out.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(jpeg) = next_jpeg(&mut buf) {
            frames += 1;
            let item = Item {
                source: "stream",
                camera: src.camera.clone(),
                topic: redact_credentials(&src.url),
                ext: "jpg",
                payload: jpeg.into(),
            };
            let rt2 = rt.clone();
            match tokio::task::spawn_blocking(move || {
                crate::journal::boundary::blocking(|| spool_batch(&rt2, &[item]))
            })
            .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(camera = %src.camera, "stream frame not spooled: {e}"),
                Err(e) => tracing::error!("{e}"),
            }
        }
        if buf.len() > MAX_FRAME {
            buf.clear();
        }
    }
    let status = child.wait().await?;
    let msg = errors.await.unwrap_or_default();
    if !status.success() && frames == 0 {
        // The message names the URL it failed on: credentials are masked.
        let last = redact_credentials(msg.lines().last().unwrap_or("no message"));
        return Err(std::io::Error::other(format!(
            "{program} exited with {status}: {last}"
        )));
    }
    Ok(frames)
}

/// Takes the first whole JPEG (SOI .. EOI) off the front of `buf`. Neither grabber writes
/// embedded thumbnails, and fogd-vision's note (a COM segment of JSON text) holds no 0xFF byte,
/// so the first EOI after an SOI ends the image.
fn next_jpeg(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let start = buf.windows(2).position(|w| w == [0xFF, 0xD8])?;
    let end = buf[start + 2..].windows(2).position(|w| w == [0xFF, 0xD9])? + start + 4;
    let jpeg = buf[start..end].to_vec();
    buf.drain(..end);
    Some(jpeg)
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits_concatenated_jpegs() {
        let mut buf = vec![0xFF, 0xD8, 1, 2, 0xFF, 0xD9, 0xFF, 0xD8, 3];
        assert_eq!(
            super::next_jpeg(&mut buf),
            Some(vec![0xFF, 0xD8, 1, 2, 0xFF, 0xD9])
        );
        assert_eq!(super::next_jpeg(&mut buf), None, "the second is not whole yet");
        buf.extend_from_slice(&[0xFF, 0xD9]);
        assert_eq!(super::next_jpeg(&mut buf), Some(vec![0xFF, 0xD8, 3, 0xFF, 0xD9]));
        assert!(buf.is_empty());
    }
}
