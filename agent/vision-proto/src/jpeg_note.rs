//! The anonymiser's report carried inside the anonymised JPEG (COM segments), so that the next
//! stage of a workflow, which is given that one file, knows the faces and the masks judged
//! before blurring (the blurred picture cannot tell) and can draw its verdict on the picture.

/// Starts each COM segment of the anonymiser's report; other comments are left alone.
pub const REPORT: &[u8] = b"fogd-report/1\n";
/// Starts the COM segment of the node's signed receipt (added by fogd when it stores the frame).
pub const RECEIPT: &[u8] = b"fogd-receipt/1\n";
const SOI: [u8; 2] = [0xFF, 0xD8];
const COM: u8 = 0xFE;
const SOS: u8 = 0xDA;
const EOI: u8 = 0xD9;
/// `jpeg` with the anonymiser's report added (`REPORT`); `None` if it is not a JPEG.
pub fn embed(jpeg: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
    embed_tagged(jpeg, REPORT, payload)
}

/// The anonymiser's report, if the JPEG carries one.
pub fn read(jpeg: &[u8]) -> Option<Vec<u8>> {
    read_tagged(jpeg, REPORT)
}

/// `jpeg` with `payload` added in COM segments starting with `tag`, right after SOI; `None` if
/// it is not a JPEG.
pub fn embed_tagged(jpeg: &[u8], tag: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
    if !jpeg.starts_with(&SOI) {
        return None;
    }
    // A segment's length field counts itself (2 bytes) and holds at most 65535.
    let max_chunk = 65535 - 2 - tag.len();
    let mut out = Vec::with_capacity(jpeg.len() + payload.len() + 64);
    out.extend_from_slice(&SOI);
    for chunk in payload.chunks(max_chunk) {
        let len = (2 + tag.len() + chunk.len()) as u16;
        out.extend_from_slice(&[0xFF, COM]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(tag);
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&jpeg[2..]);
    Some(out)
}

/// The payload of the COM segments starting with `tag` before the image data, joined.
pub fn read_tagged(jpeg: &[u8], tag: &[u8]) -> Option<Vec<u8>> {
    let mut payload = Vec::new();
    let mut found = false;
    walk(jpeg, |marker, body, _| {
        if let Some(chunk) = body.strip_prefix(tag).filter(|_| marker == COM) {
            payload.extend_from_slice(chunk);
            found = true;
        }
    })?;
    found.then_some(payload)
}

/// `jpeg` without its COM segments starting with `tag`: what a receipt's hash covers.
pub fn strip_tagged(jpeg: &[u8], tag: &[u8]) -> Option<Vec<u8>> {
    let mut cut = Vec::new();
    walk(jpeg, |marker, body, range| {
        if marker == COM && body.starts_with(tag) {
            cut.push(range);
        }
    })?;
    let mut out = Vec::with_capacity(jpeg.len());
    let mut at = 0;
    for r in cut {
        out.extend_from_slice(&jpeg[at..r.start]);
        at = r.end;
    }
    out.extend_from_slice(&jpeg[at..]);
    Some(out)
}

/// Calls `f(marker, body, segment's byte range)` for each segment before the image data; `None`
/// when it is not a JPEG or a segment runs past the end.
fn walk(jpeg: &[u8], mut f: impl FnMut(u8, &[u8], std::ops::Range<usize>)) -> Option<()> {
    if !jpeg.starts_with(&SOI) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return None;
        }
        let marker = jpeg[i + 1];
        if marker == 0xFF {
            // Fill byte.
            i += 1;
            continue;
        }
        if marker == SOS || marker == EOI {
            break;
        }
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        let end = i + 2 + len;
        if len < 2 || end > jpeg.len() {
            return None;
        }
        f(marker, &jpeg[i + 4..end], i..end);
        i = end;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_larger_than_one_segment_comes_back_whole() {
        // SOI, an APP0 segment, SOS, data, EOI: enough for the walk.
        let jpeg = [
            &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x4A, 0x46][..],
            &[0xFF, 0xDA, 0x00, 0x02, 0x11, 0x22, 0xFF, 0xD9],
        ]
        .concat();
        assert_eq!(read(&jpeg), None);
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let with = embed(&jpeg, &payload).expect("jpeg");
        assert_eq!(read(&with).as_deref(), Some(&payload[..]));
        assert!(with.ends_with(&jpeg[2..]));
        assert_eq!(embed(b"GIF89a", b"x"), None);
        // Cut short inside a segment: nothing, not a panic.
        assert_eq!(read(&with[..100]), None);
        // A receipt beside the report: each read back alone, and stripped to the bytes before.
        let signed = embed_tagged(&with, RECEIPT, b"token").expect("jpeg");
        assert_eq!(read_tagged(&signed, RECEIPT).as_deref(), Some(&b"token"[..]));
        assert_eq!(read(&signed).as_deref(), Some(&payload[..]));
        assert_eq!(strip_tagged(&signed, RECEIPT).as_deref(), Some(&with[..]));
        assert_eq!(strip_tagged(&with, RECEIPT).as_deref(), Some(&with[..]));
    }
}
