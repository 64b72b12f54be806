//! Still images: read and decoded as 8-bit BGR with their size checked from the header first,
//! and written atomically.

use std::path::Path;

use opencv::core::{Mat, Vector};
use opencv::imgcodecs;
use opencv::prelude::*;

use super::{io_err, Result, VisionError};

/// Images above this many pixels are refused (a 16K panorama; 8K is 33 Mpx and fine).
pub const MAX_PIXELS: i64 = 150_000_000;

const IMAGE_EXTS: &[&str] = &[
    "jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff", "pgm", "ppm", "pnm",
];

pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str()))
}

pub(crate) fn bad(path: &Path, reason: impl Into<String>) -> VisionError {
    VisionError::BadInput {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// An image as 8-bit BGR, whatever it was (grayscale, alpha, 16-bit).
pub fn read_image(path: &Path) -> Result<Mat> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    decode_image(path, &bytes)
}

pub fn decode_image(path: &Path, bytes: &[u8]) -> Result<Mat> {
    if bytes.is_empty() {
        return Err(bad(path, "zero bytes: not an image"));
    }
    // The header first: a huge image is refused before its pixels are allocated (a 4 KB JPEG
    // declaring 30000x30000 took 2.7 GB to decode). A format whose header this does not read
    // is bounded only by OpenCV's own limit (2^30 pixels, read when the library loads).
    if let Ok(size) = imagesize::blob_size(bytes) {
        let px = size.width as i64 * size.height as i64;
        if px > MAX_PIXELS {
            return Err(bad(
                path,
                format!(
                    "{}x{} (from its header) is over the limit of {MAX_PIXELS} pixels; not decoded",
                    size.width, size.height
                ),
            ));
        }
    }
    let buf = Vector::<u8>::from_slice(bytes);
    let img = imgcodecs::imdecode(&buf, imgcodecs::IMREAD_COLOR)
        .map_err(|e| bad(path, format!("not an image OpenCV can decode: {}", e.message)))?;
    if img.empty() {
        return Err(bad(
            path,
            "not an image OpenCV can decode (unknown format or corrupt)",
        ));
    }
    let px = img.cols() as i64 * img.rows() as i64;
    if px > MAX_PIXELS {
        return Err(bad(
            path,
            format!(
                "{}x{} is over the limit of {MAX_PIXELS} pixels",
                img.cols(),
                img.rows()
            ),
        ));
    }
    Ok(img)
}

/// Writes an image atomically (temp + rename), so a watcher never sees half a file.
pub fn write_image(path: &Path, img: &Mat, jpeg_quality: i32) -> Result<()> {
    write_atomic(path, &encode_image(path, img, jpeg_quality)?)
}

/// The bytes `write_image` would write (the format from `path`'s extension).
pub fn encode_image(path: &Path, img: &Mat, jpeg_quality: i32) -> Result<Vec<u8>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("jpg")
        .to_ascii_lowercase();
    let mut params = Vector::<i32>::new();
    if ext == "jpg" || ext == "jpeg" {
        params.push(imgcodecs::IMWRITE_JPEG_QUALITY);
        params.push(jpeg_quality);
    }
    let mut buf = Vector::<u8>::new();
    if !imgcodecs::imencode(&format!(".{ext}"), img, &mut buf, &params)? {
        return Err(bad(path, "OpenCV could not encode the image"));
    }
    Ok(buf.to_vec())
}

/// Writes `bytes` to `path` through a new temporary file renamed into place. Nothing is written
/// through a link: the folder must not be one (a script sharing it could have planted it), the
/// temporary file is created new under a name no one can guess ahead, and the rename replaces a
/// link at `path` rather than following it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(VisionError::BadInput {
                path: dir.to_path_buf(),
                reason: "is a link: nothing is written through it".into(),
            });
        }
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = path.with_file_name(format!(".{name}.{}.{nanos}.fogd-tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(io_err(&tmp))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io_err(path)));
    if written.is_err() {
        // A half-written temp file in TMP_OUTPUT_DIR would be collected as an output.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link planted where the output goes is replaced, never written through; a folder that
    /// is a link is refused.
    #[test]
    fn nothing_is_written_through_a_link() {
        let dir = tempfile::tempdir().expect("tmp");
        let target = dir.path().join("precious");
        std::fs::write(&target, b"keep").expect("write");
        let out = dir.path().join("out");
        std::fs::create_dir(&out).expect("mkdir");
        std::os::unix::fs::symlink(&target, out.join("x.jpg")).expect("link");
        write_atomic(&out.join("x.jpg"), b"frame").expect("written");
        assert_eq!(std::fs::read(&target).expect("read"), b"keep");
        assert!(!std::fs::symlink_metadata(out.join("x.jpg"))
            .expect("meta")
            .file_type()
            .is_symlink());
        std::os::unix::fs::symlink(dir.path(), out.join("clip")).expect("link");
        let e = write_atomic(&out.join("clip/img1.jpg"), b"frame").expect_err("refused");
        assert!(e.to_string().contains("is a link"), "{e}");
        assert!(!dir.path().join("img1.jpg").exists());
        let leftovers = std::fs::read_dir(&out).expect("list").count();
        assert_eq!(leftovers, 2, "no temporary file is left");
    }
}
