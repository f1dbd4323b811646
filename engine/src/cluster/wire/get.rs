//! `GetRequest`s read and written in place, from and into borrowed names: every remote get
//! sends one and every owner reads one, and the owned message costs a `Vec` and two
//! `String`s per key each way.

use std::fmt;

use bytes::{Buf, BufMut};
use distcache_proto::v1 as pb;
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

/// A keyspace and a key, as a request names them.
pub(crate) trait KeyName {
    fn keyspace(&self) -> &str;
    fn key(&self) -> &str;
}

impl KeyName for pb::KeyRef {
    fn keyspace(&self) -> &str {
        &self.keyspace
    }

    fn key(&self) -> &str {
        &self.key
    }
}

/// A `KeyRef` read in place from a request's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyRef<'a> {
    pub(crate) keyspace: &'a str,
    pub(crate) key: &'a str,
}

impl KeyName for KeyRef<'_> {
    fn keyspace(&self) -> &str {
        self.keyspace
    }

    fn key(&self) -> &str {
        self.key
    }
}

impl KeyRef<'_> {
    /// The owned message, for work that outlives the request's bytes.
    pub(crate) fn to_message(self) -> pb::KeyRef {
        pb::KeyRef { keyspace: self.keyspace.to_owned(), key: self.key.to_owned() }
    }

    /// The length of this `KeyRef` encoded.
    fn encoded_len(&self) -> usize {
        string_len(1, self.keyspace) + string_len(2, self.key)
    }
}

/// Why a request's bytes are not a `GetRequest`.
#[derive(Debug)]
pub(crate) enum Malformed {
    Protobuf(DecodeError),
    /// A length that runs past the end of the message.
    Truncated,
    /// A name that is not UTF-8 (proto3 strings must be).
    NotUtf8,
    /// A known field encoded as something other than what it is.
    WireType(WireType),
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::Protobuf(err) => err.fmt(f),
            Malformed::Truncated => f.write_str("a field runs past the end of the message"),
            Malformed::NotUtf8 => f.write_str("a name is not UTF-8"),
            Malformed::WireType(wire_type) => write!(f, "a known field sent as {wire_type:?}"),
        }
    }
}

impl From<DecodeError> for Malformed {
    fn from(err: DecodeError) -> Self {
        Malformed::Protobuf(err)
    }
}

/// The keys a `GetRequest` asks for, borrowed from its bytes; the `forwarded` mark and unknown
/// fields are skipped. Accepts exactly what the generated decoder accepts.
pub(crate) fn requested_keys(mut body: &[u8]) -> Result<Vec<KeyRef<'_>>, Malformed> {
    let mut keys = Vec::with_capacity(1);
    while !body.is_empty() {
        match field(&mut body)? {
            (1, Field::Delimited(key_ref)) => keys.push(key_ref_from(key_ref)?),
            (1, Field::Other(wire_type)) => return Err(Malformed::WireType(wire_type)),
            _ => {}
        }
    }
    Ok(keys)
}

fn key_ref_from(mut body: &[u8]) -> Result<KeyRef<'_>, Malformed> {
    let mut key_ref = KeyRef { keyspace: "", key: "" };
    while !body.is_empty() {
        let (tag, bytes) = match field(&mut body)? {
            (tag @ (1 | 2), Field::Delimited(bytes)) => (tag, bytes),
            (1 | 2, Field::Other(wire_type)) => return Err(Malformed::WireType(wire_type)),
            _ => continue,
        };
        let name = std::str::from_utf8(bytes).map_err(|_| Malformed::NotUtf8)?;
        if tag == 1 {
            key_ref.keyspace = name;
        } else {
            key_ref.key = name;
        }
    }
    Ok(key_ref)
}

/// One field read off the front of a message.
enum Field<'a> {
    /// A length-delimited field's bytes.
    Delimited(&'a [u8]),
    /// Any other field, skipped over.
    Other(WireType),
}

/// Reads the field at the front of `body` (tag and contents) and moves past it.
fn field<'a>(body: &mut &'a [u8]) -> Result<(u32, Field<'a>), Malformed> {
    let (tag, wire_type) = encoding::decode_key(body)?;
    if wire_type != WireType::LengthDelimited {
        encoding::skip_field(wire_type, tag, body, DecodeContext::default())?;
        return Ok((tag, Field::Other(wire_type)));
    }
    let len = usize::try_from(encoding::decode_varint(body)?).map_err(|_| Malformed::Truncated)?;
    if len > body.len() {
        return Err(Malformed::Truncated);
    }
    let (contents, rest) = body.split_at(len);
    *body = rest;
    Ok((tag, Field::Delimited(contents)))
}

/// A one-key `GetRequest` (marked forwarded) encoded straight from borrowed names. It is only
/// ever encoded; decoding one skips every field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OneKeyGet<'a>(pub(crate) KeyRef<'a>);

/// The encoded length of a proto3 string field (absent when empty).
fn string_len(tag: u32, value: &str) -> usize {
    if value.is_empty() {
        return 0;
    }
    encoding::key_len(tag) + encoding::encoded_len_varint(value.len() as u64) + value.len()
}

fn encode_string(tag: u32, value: &str, buf: &mut impl BufMut) {
    if !value.is_empty() {
        encoding::encode_key(tag, WireType::LengthDelimited, buf);
        encoding::encode_varint(value.len() as u64, buf);
        buf.put_slice(value.as_bytes());
    }
}

impl Message for OneKeyGet<'_> {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        // GetRequest { keys: [KeyRef { keyspace, key }] (field 1), forwarded: true (field 2) }
        encoding::encode_key(1, WireType::LengthDelimited, buf);
        encoding::encode_varint(self.0.encoded_len() as u64, buf);
        encode_string(1, self.0.keyspace, buf);
        encode_string(2, self.0.key, buf);
        encoding::encode_key(2, WireType::Varint, buf);
        encoding::encode_varint(1, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        let key_ref = self.0.encoded_len();
        encoding::key_len(1)
            + encoding::encoded_len_varint(key_ref as u64)
            + key_ref
            + encoding::key_len(2)
            + 1
    }

    fn clear(&mut self) {
        *self = OneKeyGet(KeyRef { keyspace: "", key: "" });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(keys: &[(&str, &str)]) -> pb::GetRequest {
        let keys = keys
            .iter()
            .map(|(keyspace, key)| pb::KeyRef { keyspace: (*keyspace).into(), key: (*key).into() })
            .collect();
        pb::GetRequest { keys, forwarded: true }
    }

    #[test]
    fn a_one_key_get_encodes_as_the_generated_message_does() {
        let long = "k".repeat(300);
        for (keyspace, key) in [("bench", "key-1"), ("", "k"), ("users", long.as_str())] {
            let borrowed = OneKeyGet(KeyRef { keyspace, key });
            let owned = request(&[(keyspace, key)]);
            assert_eq!(borrowed.encoded_len(), owned.encoded_len());
            assert_eq!(borrowed.encode_to_vec(), owned.encode_to_vec());
            let decoded = pb::GetRequest::decode(borrowed.encode_to_vec().as_slice()).unwrap();
            assert_eq!(decoded, owned);
        }
    }

    #[test]
    fn requested_keys_read_what_the_generated_encoder_wrote() {
        let long = "é".repeat(200);
        let cases: [&[(&str, &str)]; 4] =
            [&[], &[("bench", "key-1")], &[("", "k"), ("users", "")], &[("a", &long), ("b", "c")]];
        for keys in cases {
            let body = request(keys).encode_to_vec();
            let read = requested_keys(&body).unwrap();
            let read: Vec<(&str, &str)> = read.iter().map(|k| (k.keyspace, k.key)).collect();
            assert_eq!(read, keys);
        }
    }

    #[test]
    fn requested_keys_skip_unknown_fields_and_refuse_what_the_generated_decoder_refuses() {
        // KeyRef { keyspace: "s", key: "k", 9: varint 7 } then GetRequest field 5: fixed32.
        let with_unknown = [10, 8, 10, 1, b's', 18, 1, b'k', 72, 7, 45, 1, 2, 3, 4];
        let generated = pb::GetRequest::decode(&with_unknown[..]).unwrap();
        assert_eq!(generated.keys, request(&[("s", "k")]).keys);
        let read = requested_keys(&with_unknown).unwrap();
        assert_eq!(read, [KeyRef { keyspace: "s", key: "k" }]);

        let refused: [&[u8]; 5] = [
            &[10, 9, 10, 1, b's'],       // a KeyRef longer than the message
            &[10, 3, 10, 1, 0xff],       // a keyspace that is not UTF-8
            &[8, 1],                     // keys (field 1) as a varint
            &[10, 2, 16, 1],             // a key (field 2) as a varint
            &[10, 4, 10, 5, b'a', b'b'], // a keyspace longer than its KeyRef
        ];
        for body in refused {
            assert!(pb::GetRequest::decode(body).is_err(), "{body:?} is valid protobuf");
            assert!(requested_keys(body).is_err(), "{body:?} was accepted");
        }
    }
}
