//! What the tests and benches measure a process by, and the camera frames they send.

/// A `/proc/<pid>/status` field in KiB (`VmRSS:`, `VmHWM:`); 0 when the process is gone.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// `jpeg` with comment (COM) segments right after its start marker, about `size` bytes in all
/// (at least the photo and one 8-byte comment): still a JPEG, decoded the same.
pub fn padded_jpeg(jpeg: &[u8], size: usize) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut pad = size.saturating_sub(jpeg.len()).max(12);
    while pad >= 12 {
        let body = (pad - 4).min(65_000);
        out.extend_from_slice(&[0xFF, 0xFE]);
        out.extend_from_slice(&((body + 2) as u16).to_be_bytes());
        out.resize(out.len() + body, b'p');
        pad -= body + 4;
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// `jpeg` whose frame header now declares 30000x30000 pixels (a decompression bomb: 2.7 GB
/// once decoded).
pub fn jpeg_bomb(jpeg: &[u8]) -> Vec<u8> {
    let mut bomb = jpeg.to_vec();
    let sof = bomb
        .windows(2)
        .position(|w| w == [0xFF, 0xC0] || w == [0xFF, 0xC2])
        .expect("a JPEG with a frame header");
    bomb[sof + 5..sof + 9].copy_from_slice(&[0x75, 0x30, 0x75, 0x30]);
    bomb
}
