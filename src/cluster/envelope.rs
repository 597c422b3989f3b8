//! The envelope around every group message: who sent it, and the opaque payload.
//!
//! ```text
//! [codec::WIRE_VERSION][postcard: sender node name (varint len + UTF-8)][postcard: payload (varint len + bytes)]
//! ```
//!
//! It is one [`crate::codec`] frame, so it has the codec's version byte and its size limit is
//! checked before a byte of it is decoded. The payload is opaque here; the replica layer
//! decodes it.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::config::MAX_NODE_NAME_LEN;
use crate::codec::{self, CodecError};

/// Bytes an envelope adds to its payload, at most: the version byte, the sender name with
/// its length, and the payload's length.
pub(crate) const ENVELOPE_OVERHEAD: usize = 1 + 2 + MAX_NODE_NAME_LEN + 10;

/// The envelope as it is written (borrowing the payload: no copy before encoding).
#[derive(Serialize)]
struct EnvelopeRef<'a> {
    sender: &'a str,
    payload: BytesRef<'a>,
}

/// The envelope as it is read.
#[derive(Deserialize)]
struct Envelope {
    sender: String,
    payload: ByteBuf,
}

/// `&[u8]` serialized as serde bytes (one length and a memcpy) rather than a sequence of
/// `u8`s, which postcard would write one call per byte.
struct BytesRef<'a>(&'a [u8]);

impl Serialize for BytesRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// The owned counterpart of [`BytesRef`].
struct ByteBuf(Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Why a received frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvelopeError {
    /// Not a valid frame: oversized (checked first), empty, future version, malformed,
    /// truncated, trailing bytes.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The frame decoded but its payload is over `max_message_size`.
    #[error("payload of {len} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge { len: usize, limit: usize },
    /// The sender name is empty or longer than a node name can be.
    #[error("invalid sender name ({len} bytes)")]
    BadSender { len: usize },
}

/// The largest frame an envelope around a payload of at most `max_payload` bytes can be.
pub(crate) fn frame_limit(max_payload: usize) -> usize {
    max_payload.saturating_add(ENVELOPE_OVERHEAD)
}

/// Wraps `payload` from `sender`. The caller has checked `payload.len() <= max_payload`.
pub(crate) fn encode(
    sender: &str,
    payload: &[u8],
    max_payload: usize,
) -> Result<Vec<u8>, CodecError> {
    codec::encode(
        &EnvelopeRef {
            sender,
            payload: BytesRef(payload),
        },
        frame_limit(max_payload),
    )
}

/// Unwraps a frame into `(sender, payload)`. Never panics; the size is checked before
/// decoding.
pub(crate) fn decode(frame: &[u8], max_payload: usize) -> Result<(String, Vec<u8>), EnvelopeError> {
    let env: Envelope = codec::decode(frame, frame_limit(max_payload))?;
    if env.payload.0.len() > max_payload {
        return Err(EnvelopeError::PayloadTooLarge {
            len: env.payload.0.len(),
            limit: max_payload,
        });
    }
    if env.sender.is_empty() || env.sender.len() > MAX_NODE_NAME_LEN {
        return Err(EnvelopeError::BadSender {
            len: env.sender.len(),
        });
    }
    Ok((env.sender, env.payload.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::WIRE_VERSION;
    use proptest::prelude::*;

    #[test]
    fn golden_layout() {
        let frame = encode("ab", &[1, 2, 3], 16).unwrap();
        assert_eq!(frame, [WIRE_VERSION, 2, b'a', b'b', 3, 1, 2, 3]);
    }

    #[test]
    fn roundtrip_empty_payload() {
        let frame = encode("n", &[], 0).unwrap();
        assert_eq!(decode(&frame, 0).unwrap(), ("n".to_string(), vec![]));
    }

    #[test]
    fn largest_sender_and_payload_fit_the_frame_limit() {
        let name = "x".repeat(MAX_NODE_NAME_LEN);
        let max = 70_000; // a 3-byte varint length
        let frame = encode(&name, &vec![7; max], max).unwrap();
        assert!(frame.len() <= frame_limit(max));
        assert_eq!(decode(&frame, max).unwrap().1.len(), max);
    }

    #[test]
    fn oversized_frame_is_refused_before_decoding() {
        let frame = encode("n", &[0; 100], 100).unwrap();
        // Garbage after the version byte: the size check must fire first.
        let mut big = vec![WIRE_VERSION, 0xff];
        big.resize(frame_limit(10) + 1, 0xff);
        assert!(matches!(
            decode(&big, 10),
            Err(EnvelopeError::Codec(CodecError::FrameTooLarge { .. }))
        ));
        // A frame within the frame limit whose payload is over the payload limit.
        assert_eq!(
            decode(&frame, 99),
            Err(EnvelopeError::PayloadTooLarge {
                len: 100,
                limit: 99
            })
        );
    }

    #[test]
    fn bad_frames_get_typed_errors() {
        assert_eq!(
            decode(&[], 10),
            Err(EnvelopeError::Codec(CodecError::EmptyFrame))
        );
        let mut future = encode("n", b"p", 10).unwrap();
        future[0] = WIRE_VERSION + 1;
        assert!(matches!(
            decode(&future, 10),
            Err(EnvelopeError::Codec(CodecError::UnknownVersion { .. }))
        ));
        let frame = encode("n", b"payload", 10).unwrap();
        assert_eq!(
            decode(&frame[..frame.len() - 1], 10),
            Err(EnvelopeError::Codec(CodecError::Truncated))
        );
        let mut trailing = frame.clone();
        trailing.push(0);
        assert_eq!(
            decode(&trailing, 10),
            Err(EnvelopeError::Codec(CodecError::TrailingBytes { count: 1 }))
        );
        let empty_sender = encode("", b"p", 10).unwrap();
        assert_eq!(
            decode(&empty_sender, 10),
            Err(EnvelopeError::BadSender { len: 0 })
        );
        let bad_utf8 = [WIRE_VERSION, 1, 0xff, 0];
        assert!(matches!(
            decode(&bad_utf8, 10),
            Err(EnvelopeError::Codec(CodecError::Malformed { .. }))
        ));
    }

    proptest! {
        #[test]
        fn roundtrip(sender in "[a-z0-9@.:-]{1,40}", payload in proptest::collection::vec(any::<u8>(), 0..600)) {
            let frame = encode(&sender, &payload, 600).unwrap();
            prop_assert!(frame.len() <= frame_limit(600));
            prop_assert_eq!(decode(&frame, 600).unwrap(), (sender, payload));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), limit in 0usize..300) {
            let _ = decode(&bytes, limit);
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_version_never_panic(rest in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut frame = vec![WIRE_VERSION];
            frame.extend(rest);
            if let Ok((sender, payload)) = decode(&frame, 256) {
                prop_assert!(!sender.is_empty() && payload.len() <= 256);
            }
        }

        #[test]
        fn mutated_frames_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..64), at in any::<usize>(), byte in any::<u8>()) {
            let mut frame = encode("node", &payload, 64).unwrap();
            let i = at % frame.len();
            frame[i] = byte;
            let _ = decode(&frame, 64);
        }
    }
}
