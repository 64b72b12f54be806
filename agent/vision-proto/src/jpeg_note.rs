//! The anonymiser's report carried inside the anonymised JPEG (COM segments), so that the next
//! stage of a workflow, which is given that one file, knows the faces and the masks judged
//! before blurring (the blurred picture cannot tell) and can draw its verdict on the picture.

/// Starts each of fogd's COM segments; other comments are left alone.
const TAG: &[u8] = b"fogd-report/1\n";
const SOI: [u8; 2] = [0xFF, 0xD8];
const COM: u8 = 0xFE;
const SOS: u8 = 0xDA;
const EOI: u8 = 0xD9;
/// A segment's length field counts itself (2 bytes) and holds at most 65535.
const MAX_CHUNK: usize = 65535 - 2 - TAG.len();

/// `jpeg` with `payload` added in COM segments right after SOI; `None` if it is not a JPEG.
pub fn embed(jpeg: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
    if !jpeg.starts_with(&SOI) {
        return None;
    }
    let mut out = Vec::with_capacity(jpeg.len() + payload.len() + 64);
    out.extend_from_slice(&SOI);
    for chunk in payload.chunks(MAX_CHUNK) {
        let len = (2 + TAG.len() + chunk.len()) as u16;
        out.extend_from_slice(&[0xFF, COM]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(TAG);
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&jpeg[2..]);
    Some(out)
}

/// The payload `embed` added, if any: fogd's COM segments before the image data, joined.
pub fn read(jpeg: &[u8]) -> Option<Vec<u8>> {
    if !jpeg.starts_with(&SOI) {
        return None;
    }
    let mut payload = Vec::new();
    let mut found = false;
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
        let body = &jpeg[i + 4..end];
        if marker == COM {
            if let Some(chunk) = body.strip_prefix(TAG) {
                payload.extend_from_slice(chunk);
                found = true;
            }
        }
        i = end;
    }
    found.then_some(payload)
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
    }
}
