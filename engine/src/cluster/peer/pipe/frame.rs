//! Frames of the pipelined get protocol.
//!
//! A connection opens with [`PREFACE`]; then each side sends frames
//! `length: u32 | id: u32 | kind: u8 | body`, big-endian, where `length` counts the bytes after
//! itself and `body` is a protobuf message of the peer protocol. A response carries its
//! request's id, so many requests can be out at once and answers may come in any order.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

/// The first bytes a client sends. It can be told apart from the HTTP/2 preface (`PRI `) and
/// a TLS record (0x16), so the pipe and gRPC share one port.
pub(crate) const PREFACE: &[u8; 4] = b"DCP\x01";

/// Bytes before a frame's body: length, id and kind.
const HEADER: usize = 4 + 4 + 1;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A `GetRequest`: values, loaded by the receiver if it must.
    Get = 1,
    /// A `PeekRequest`: stored values only.
    Peek = 2,
    /// A `GetResponse` to either.
    Values = 3,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::Get),
            2 => Some(Kind::Peek),
            3 => Some(Kind::Values),
            _ => None,
        }
    }
}

/// One decoded frame; its body is a slice of the receive buffer.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) id: u32,
    pub(crate) kind: Kind,
    pub(crate) body: Bytes,
}

/// Why the bytes on a connection cannot be read as frames; the connection is closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum FrameError {
    #[error("a frame of {0} bytes is over the {1}-byte limit")]
    TooLarge(usize, usize),
    #[error("a frame of {0} bytes is shorter than its header")]
    TooShort(usize),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
}

/// The length field of a frame holding `body`: the bytes after the field itself, which is
/// what a receiver holds against its limit.
pub(crate) fn length_of(body: &impl Message) -> usize {
    body.encoded_len() + HEADER - 4
}

/// Appends one frame holding `body` to `out`.
pub(crate) fn encode(out: &mut BytesMut, id: u32, kind: Kind, body: &impl Message) {
    let length = length_of(body);
    out.reserve(length + 4);
    out.put_u32(u32::try_from(length).unwrap_or(u32::MAX));
    out.put_u32(id);
    out.put_u8(kind as u8);
    // Encoding into a buffer with room reserved cannot fail.
    let _ = body.encode(out);
}

/// Takes the next whole frame off the front of `buf`; `Ok(None)` until one has arrived.
pub(crate) fn decode(buf: &mut BytesMut, max_bytes: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let length = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if length > max_bytes {
        return Err(FrameError::TooLarge(length, max_bytes));
    }
    if length < HEADER - 4 {
        return Err(FrameError::TooShort(length));
    }
    if buf.len() < 4 + length {
        // Room for the rest, so it arrives in as few reads as possible.
        buf.reserve(4 + length - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(4 + length).freeze();
    frame.advance(4);
    let id = frame.get_u32();
    let kind = frame.get_u8();
    let kind = Kind::from_byte(kind).ok_or(FrameError::UnknownKind(kind))?;
    Ok(Some(Frame { id, kind, body: frame }))
}

#[cfg(test)]
mod tests {
    use distcache_proto::v1 as pb;

    use super::*;

    fn request(key: &str) -> pb::GetRequest {
        pb::GetRequest {
            keys: vec![pb::KeyRef { keyspace: "ks".into(), key: key.into() }],
            forwarded: true,
        }
    }

    #[test]
    fn frames_round_trip_and_arrive_in_pieces() {
        let mut wire = BytesMut::new();
        encode(&mut wire, 7, Kind::Get, &request("a"));
        encode(&mut wire, 8, Kind::Peek, &request("b"));
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for byte in wire.iter() {
            buf.put_u8(*byte);
            while let Some(frame) = decode(&mut buf, 1 << 20).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].id, frames[0].kind), (7, Kind::Get));
        assert_eq!((frames[1].id, frames[1].kind), (8, Kind::Peek));
        let decoded = pb::GetRequest::decode(frames[1].body.clone()).unwrap();
        assert_eq!(decoded.keys[0].key, "b");
        assert!(buf.is_empty());
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        let error = decode(&mut buf, 1024).map(|_| ());
        assert_eq!(error, Err(FrameError::TooLarge(u32::MAX as usize, 1024)));
        let mut buf = BytesMut::from(&[0, 0, 0, 2, 1, 2][..]);
        assert_eq!(decode(&mut buf, 1024).map(|_| ()), Err(FrameError::TooShort(2)));
        let mut buf = BytesMut::from(&[0, 0, 0, 5, 0, 0, 0, 1, 99][..]);
        assert_eq!(decode(&mut buf, 1024).map(|_| ()), Err(FrameError::UnknownKind(99)));
    }
}
