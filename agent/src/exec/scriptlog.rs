//! A script's log: its stdout and stderr, up to a cap, and fogd's own notes after them. Shared
//! by the local and podman executors.

use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::local::{io, ExecError};

/// The script's stdout and stderr into its log, up to `cap` bytes. The log is made when the
/// first bytes come: most runs print nothing, and an empty file is an inode made and removed
/// per invocation.
pub(crate) async fn capture(
    out: Option<impl AsyncRead + Unpin>,
    err: Option<impl AsyncRead + Unpin>,
    log_path: &Path,
    cap: u64,
) -> std::io::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    async fn pump(r: Option<impl AsyncRead + Unpin>, tx: tokio::sync::mpsc::Sender<Vec<u8>>) {
        let Some(mut r) = r else { return };
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 || tx.send(buf[..n].to_vec()).await.is_err() {
                break;
            }
        }
    }
    let writer = async {
        let (mut written, mut dropped) = (0u64, 0u64);
        let mut log: Option<tokio::fs::File> = None;
        // A log that cannot be made or written (a full disk) is given up, but the pipes are
        // still read to their end: the script must not die of SIGPIPE half-way through.
        let mut failed: Option<std::io::Error> = None;
        while let Some(chunk) = rx.recv().await {
            let room = cap.saturating_sub(written) as usize;
            let keep = chunk.len().min(room);
            if keep > 0 && failed.is_none() {
                if let Err(e) = write(&mut log, log_path, &chunk[..keep]).await {
                    failed = Some(e);
                }
            }
            written += keep as u64;
            dropped += (chunk.len() - keep) as u64;
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if dropped > 0 {
            let note = format!("\n[fogd] log cut at {cap} bytes; {dropped} more bytes dropped\n");
            write(&mut log, log_path, note.as_bytes()).await?;
        }
        match log.as_mut() {
            Some(f) => f.flush().await,
            None => Ok(()),
        }
    };
    let tx2 = tx.clone();
    drop(tx);
    let (_, _, w) = tokio::join!(pump(out, tx2.clone()), pump(err, tx2), writer);
    w
}

/// Writes to the log, made on first use.
async fn write(log: &mut Option<tokio::fs::File>, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let f = match log {
        Some(f) => f,
        None => log.insert(tokio::fs::File::create(path).await?),
    };
    f.write_all(bytes).await
}

/// Appends fogd's own line to a log (why a run was killed, outputs not stored).
pub(crate) async fn append_note(log: &Path, note: &str) -> Result<(), ExecError> {
    // Made if the script printed nothing (its log is made on its first bytes).
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .await
        .map_err(io(log))?;
    f.write_all(note.as_bytes()).await.map_err(io(log))?;
    // tokio's File hands writes to a thread: without a flush the note may land after a reader.
    f.flush().await.map_err(io(log))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_silent_run_leaves_no_log_and_a_loud_one_is_cut_at_its_cap() {
        let dir = tempfile::tempdir().expect("tmp");
        let silent = dir.path().join("silent.log");
        capture(Some(&b""[..]), Some(&b""[..]), &silent, 100)
            .await
            .expect("capture");
        assert!(!silent.exists(), "no inode for a run that printed nothing");
        let loud = dir.path().join("loud.log");
        capture(Some(&[b'x'; 300][..]), None::<&[u8]>, &loud, 100)
            .await
            .expect("capture");
        let text = std::fs::read_to_string(&loud).expect("log");
        assert!(text.starts_with(&"x".repeat(100)), "{text}");
        assert!(
            text.contains("log cut at 100 bytes; 200 more bytes dropped"),
            "{text}"
        );
        // A note after a silent run makes the log.
        append_note(&silent, "[fogd] killed\n").await.expect("note");
        assert_eq!(std::fs::read_to_string(&silent).expect("log"), "[fogd] killed\n");
    }

    #[tokio::test]
    async fn a_log_that_cannot_be_made_still_drains_the_script_s_output() {
        let dir = tempfile::tempdir().expect("tmp");
        let nowhere = dir.path().join("no-such-folder/x.log");
        let mut out = std::io::Cursor::new(vec![b'y'; 1 << 20]);
        let r = capture(Some(&mut out), None::<&[u8]>, &nowhere, 1 << 30).await;
        assert!(r.is_err(), "the failure is reported");
        assert_eq!(
            out.position(),
            1 << 20,
            "read to its end: no SIGPIPE for the script"
        );
    }
}
