//! Deterministic protobuf encoding.
//!
//! prost encodes protobuf maps from `HashMap`s, whose iteration order is random per process.
//! Two replicas building the same Envoy resource could therefore produce different bytes, and
//! a content-addressed version would differ for equal config. [`canonicalize`] rewrites an
//! encoded message so that every map's entries are sorted by their encoded key (recursively,
//! through nested messages and `google.protobuf.Any` payloads whose type is known), leaving
//! everything else byte-for-byte as prost wrote it (fields in tag order, repeated fields in
//! their meaningful order).
//!
//! Which fields are maps, messages or `Any`s comes from a table generated from the Envoy
//! descriptor set (see `tests/schema_table.rs`); messages from which no map can be reached are
//! already deterministic and are copied verbatim.

#[rustfmt::skip]
mod schema;

use prost::encoding::{decode_varint, encode_varint};
use thiserror::Error;

/// A field's role in canonicalization: a nested message (index into the table) or a map
/// whose values are messages (`Some(index)`) or scalars (`None`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Message(u16),
    Map(Option<u16>),
}

pub(crate) type Field = (u32, Kind);

/// The encoded bytes are not a well-formed protobuf message.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("truncated varint")]
    Varint,
    #[error("field {0}: length runs past the end of the message")]
    Length(u32),
    #[error("unsupported wire type {0}")]
    WireType(u64),
    #[error("field number 0 is invalid")]
    FieldZero,
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
}

const MAX_DEPTH: usize = 100;

/// Index of a message type in the table, by full name (`envoy.config.cluster.v3.Cluster`).
fn lookup(full_name: &str) -> Option<u16> {
    schema::MESSAGES
        .binary_search_by(|(name, _)| (*name).cmp(full_name))
        .ok()
        .and_then(|i| u16::try_from(i).ok())
}

/// Returns `true` when messages of this type may contain a map, so canonicalization matters.
pub fn needs_canonicalization(full_name: &str) -> bool {
    lookup(full_name).is_some()
}

/// Canonicalizes an encoded message of the given full type name (see module docs).
/// Types without reachable maps are returned unchanged.
pub fn canonicalize(full_name: &str, bytes: &[u8]) -> Result<Vec<u8>, WireError> {
    match lookup(full_name) {
        Some(idx) => {
            let mut out = Vec::with_capacity(bytes.len());
            canon_message(idx, bytes, &mut out, 0)?;
            Ok(out)
        }
        None => Ok(bytes.to_vec()),
    }
}

pub(crate) struct RawField<'a> {
    pub(crate) number: u32,
    /// The whole field: key, optional length prefix and payload.
    pub(crate) whole: &'a [u8],
    /// The payload of a length-delimited field.
    pub(crate) payload: Option<&'a [u8]>,
}

fn read_varint(buf: &mut &[u8]) -> Result<u64, WireError> {
    decode_varint(buf).map_err(|_| WireError::Varint)
}

pub(crate) fn split_fields(mut buf: &[u8]) -> Result<Vec<RawField<'_>>, WireError> {
    let mut fields = Vec::new();
    while !buf.is_empty() {
        let start = buf;
        let key = read_varint(&mut buf)?;
        let number = u32::try_from(key >> 3).map_err(|_| WireError::FieldZero)?;
        if number == 0 {
            return Err(WireError::FieldZero);
        }
        let payload = match key & 7 {
            0 => {
                read_varint(&mut buf)?;
                None
            }
            1 => {
                buf = buf.get(8..).ok_or(WireError::Length(number))?;
                None
            }
            5 => {
                buf = buf.get(4..).ok_or(WireError::Length(number))?;
                None
            }
            2 => {
                let len = usize::try_from(read_varint(&mut buf)?)
                    .map_err(|_| WireError::Length(number))?;
                let payload = buf.get(..len).ok_or(WireError::Length(number))?;
                buf = &buf[len..];
                Some(payload)
            }
            other => return Err(WireError::WireType(other)),
        };
        let used = start.len() - buf.len();
        fields.push(RawField {
            number,
            whole: &start[..used],
            payload,
        });
    }
    Ok(fields)
}

fn write_len_delimited(number: u32, payload: &[u8], out: &mut Vec<u8>) {
    encode_varint((u64::from(number) << 3) | 2, out);
    encode_varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

fn kind_of(idx: u16, number: u32) -> Option<Kind> {
    let fields = schema::MESSAGES[usize::from(idx)].1;
    fields
        .binary_search_by_key(&number, |(n, _)| *n)
        .ok()
        .map(|i| fields[i].1)
}

fn canon_message(idx: u16, bytes: &[u8], out: &mut Vec<u8>, depth: usize) -> Result<(), WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError::TooDeep(MAX_DEPTH));
    }
    if idx == schema::ANY {
        return canon_any(bytes, out, depth);
    }
    let fields = split_fields(bytes)?;
    let mut done_maps: Vec<u32> = Vec::new();
    for f in &fields {
        match (kind_of(idx, f.number), f.payload) {
            (Some(Kind::Message(child)), Some(payload)) => {
                let mut inner = Vec::with_capacity(payload.len());
                canon_message(child, payload, &mut inner, depth + 1)?;
                write_len_delimited(f.number, &inner, out);
            }
            (Some(Kind::Map(value)), Some(_)) => {
                if done_maps.contains(&f.number) {
                    continue;
                }
                done_maps.push(f.number);
                let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
                for e in fields.iter().filter(|e| e.number == f.number) {
                    let payload = e.payload.ok_or(WireError::Length(e.number))?;
                    entries.push(canon_map_entry(value, payload, depth + 1)?);
                }
                entries.sort();
                for (_, entry) in entries {
                    write_len_delimited(f.number, &entry, out);
                }
            }
            _ => out.extend_from_slice(f.whole),
        }
    }
    Ok(())
}

/// Returns (sort key, canonical entry bytes). The sort key is the encoded key field.
fn canon_map_entry(
    value: Option<u16>,
    bytes: &[u8],
    depth: usize,
) -> Result<(Vec<u8>, Vec<u8>), WireError> {
    let mut key = Vec::new();
    let mut out = Vec::with_capacity(bytes.len());
    for f in split_fields(bytes)? {
        match (f.number, value, f.payload) {
            (1, _, _) => {
                key = f.whole.to_vec();
                out.extend_from_slice(f.whole);
            }
            (2, Some(child), Some(payload)) => {
                let mut inner = Vec::with_capacity(payload.len());
                canon_message(child, payload, &mut inner, depth + 1)?;
                write_len_delimited(2, &inner, &mut out);
            }
            _ => out.extend_from_slice(f.whole),
        }
    }
    Ok((key, out))
}

fn canon_any(bytes: &[u8], out: &mut Vec<u8>, depth: usize) -> Result<(), WireError> {
    let fields = split_fields(bytes)?;
    let type_url = fields
        .iter()
        .find(|f| f.number == 1)
        .and_then(|f| f.payload)
        .and_then(|p| std::str::from_utf8(p).ok())
        .unwrap_or_default();
    let inner_type = type_url.rsplit('/').next().and_then(lookup);
    for f in &fields {
        match (f.number, inner_type, f.payload) {
            (2, Some(child), Some(payload)) => {
                let mut inner = Vec::with_capacity(payload.len());
                canon_message(child, payload, &mut inner, depth + 1)?;
                write_len_delimited(2, &inner, out);
            }
            _ => out.extend_from_slice(f.whole),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
