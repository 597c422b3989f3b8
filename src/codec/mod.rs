//! herd's wire format: a version byte followed by a compact binary serde encoding.
//!
//! Every message herd puts on the network or on disk goes through [`encode`] and comes back
//! through [`decode`]. A frame is
//!
//! ```text
//! [version: u8 = WIRE_VERSION][payload: postcard encoding of the message]
//! ```
//!
//! This module owns the frame, the size limit and the error taxonomy. It does not own the
//! message types (those live with the layer that sends them), transport framing (ractor_cluster
//! already length-prefixes its frames) or compression.
//!
//! # Guarantees
//!
//! - [`decode`] checks the size limit **before** looking at a single payload byte, and it never
//!   panics on any input: an empty frame, an unknown version, an oversized frame, a truncated
//!   or malformed payload and trailing bytes each give their own [`CodecError`] variant.
//! - A length prefix cannot make [`decode`] allocate more than the frame itself justifies: the
//!   decoder reads from a borrowed slice and checks a string or byte length against the bytes
//!   that remain before copying; sequence capacity hints are capped by the remaining bytes, and
//!   the standard collections cap preallocation through serde's "cautious" hint.
//! - [`encode`] stops writing as soon as the frame would pass its limit, so an oversized
//!   message costs at most `limit` bytes of memory, not the size of the whole message.
//!
//! # Rules for wire types
//!
//! postcard is not self-describing, which is where its compactness comes from. So:
//!
//! - Any change to the shape of a type that crosses the wire (a field added, removed or
//!   reordered, an enum variant inserted before another) is a **format change**: bump
//!   [`WIRE_VERSION`] and update the golden vectors in `codec/tests.rs`.
//! - Don't use serde features that need a self-describing format: `#[serde(flatten)]`,
//!   `#[serde(untagged)]`, `skip_serializing_if`, `deserialize_any` / `serde_json::Value`.
//! - Hand-written `Deserialize` impls must not preallocate from a length prefix (use
//!   serde's `size_hint::cautious`-style capping, as std does), and must not put
//!   zero-sized elements in a sequence: a zero-sized element consumes no bytes, so a forged
//!   length of 2^60 would spin the decoder instead of running out of input.
//! - postcard has no recursion limit. A recursive type (a nested document map, say) must
//!   bound its own depth when decoding, or a frame of nested openings can exhaust the stack.
//!
//! # Why postcard (and not bincode)
//!
//! - **Maintenance.** bincode 3.0.0, the newest release on crates.io, is a tombstone: its
//!   `lib.rs` is a single `compile_error!`, and its README says development has ceased and no
//!   further releases will be published (RUSTSEC-2025-0141 marks the crate unmaintained).
//!   1.3.3 and 2.0.1 still build but will get no fixes. postcard 1.x is maintained and its
//!   wire format is specified and stable across 1.x, which is what a versioned format wants.
//! - **Size.** postcard writes every integer wider than a byte, every length and every enum
//!   tag as a varint (zigzag for signed), so the small structs herd sends (dots, counters,
//!   hashes of short keys, acks) take a few bytes. bincode 1.x defaults to fixed 8-byte
//!   integers and lengths; its varint mode is opt-in configuration that every call must repeat.
//! - **Decode safety.** postcard's slice decoder never allocates from a length prefix alone
//!   (see the guarantees above); bincode 1.x needs an explicit `with_limit` on every call to
//!   avoid allocating what a forged prefix claims.
//! - **Compile time.** With default features off, postcard depends on `serde` and the tiny
//!   `cobs` crate only.
//!
//! # Examples
//!
//! ```
//! use herd::codec::{self, CodecError, WIRE_VERSION};
//!
//! let frame = codec::encode(&(7u64, "hello".to_string()), 1024)?;
//! assert_eq!(frame[0], WIRE_VERSION);
//! let (n, s): (u64, String) = codec::decode(&frame, 1024)?;
//! assert_eq!((n, s.as_str()), (7, "hello"));
//!
//! // A frame from a future version is refused, not misread.
//! let mut future = frame.clone();
//! future[0] = WIRE_VERSION + 1;
//! assert!(matches!(
//!     codec::decode::<(u64, String)>(&future, 1024),
//!     Err(CodecError::UnknownVersion { .. })
//! ));
//! # Ok::<(), CodecError>(())
//! ```

use postcard::ser_flavors::Flavor;
use serde::Serialize;
use serde::de::DeserializeOwned;

#[cfg(test)]
mod tests;

/// The version byte this build writes at the start of every frame, and the only one it reads.
///
/// Bump it whenever the encoding of any wire type changes shape (see the module docs); a
/// replica that receives a frame with another version rejects it with
/// [`CodecError::UnknownVersion`] instead of misreading it.
pub const WIRE_VERSION: u8 = 1;

/// Why a frame could not be encoded or decoded.
///
/// Cheap to clone and compare: variants carry numbers or static descriptions, never the
/// offending bytes. None of these errors leaves anything half-done: [`encode`] returns no
/// frame and [`decode`] returns no value, so the caller's state is exactly as before the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The frame had no bytes at all, not even a version byte.
    ///
    /// Nothing was decoded; no state was changed.
    #[error("empty frame: no version byte")]
    EmptyFrame,

    /// The frame's version byte is not [`WIRE_VERSION`]: it comes from a newer (or much
    /// older) herd, or it is not a herd frame at all.
    ///
    /// The payload was not looked at; no state was changed.
    #[error("unknown wire version {found} (this build reads only version {supported})")]
    UnknownVersion {
        /// The version byte found at the start of the frame.
        found: u8,
        /// The version this build reads, i.e. [`WIRE_VERSION`].
        supported: u8,
    },

    /// The frame to decode is longer than the caller's limit.
    ///
    /// Checked before decoding, so no byte of it was parsed; no state was changed.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The length of the frame, version byte included.
        len: usize,
        /// The limit the caller passed to [`decode`].
        limit: usize,
    },

    /// The encoded frame, version byte included, would be longer than the caller's limit.
    ///
    /// Encoding stopped at the limit and the partial frame was dropped; no state was changed.
    /// Use [`encoded_len`] to learn the exact size, e.g. to split a message.
    #[error("encoded frame would exceed the limit of {limit} bytes")]
    EncodeLimitExceeded {
        /// The limit the caller passed to [`encode`].
        limit: usize,
    },

    /// The payload ended before the message was complete: the frame was cut short, or a
    /// length prefix claims more elements or bytes than the frame holds.
    ///
    /// No value was produced; no state was changed.
    #[error("truncated payload: the frame ended before the message was complete")]
    Truncated,

    /// The payload is not a valid encoding of the expected type (bad varint, bool, UTF-8,
    /// `Option` tag, enum variant, or a value the type's own `Deserialize` refused).
    ///
    /// No value was produced; no state was changed.
    #[error("malformed payload: {reason}")]
    Malformed {
        /// What the decoder found wrong.
        reason: &'static str,
    },

    /// The message decoded, but bytes were left over after it. A well-formed frame holds
    /// exactly one message, so leftovers mean the sender and receiver disagree on the type.
    ///
    /// The decoded value was dropped; no state was changed.
    #[error("{count} trailing bytes after the message")]
    TrailingBytes {
        /// How many bytes followed the message.
        count: usize,
    },

    /// The value cannot be expressed in this format, e.g. a sequence whose length is not
    /// known up front, or a type whose `Serialize` impl returned an error.
    ///
    /// No frame was produced; no state was changed.
    #[error("value cannot be encoded: {reason}")]
    Unencodable {
        /// What the encoder could not do.
        reason: &'static str,
    },
}

/// Encodes `msg` as a frame of at most `limit` bytes (version byte included).
///
/// # Errors
///
/// - [`CodecError::EncodeLimitExceeded`] if the frame would be longer than `limit`; encoding
///   stops at that point, so at most `limit` bytes are ever buffered.
/// - [`CodecError::Unencodable`] if `msg` cannot be written in this format.
///
/// # Examples
///
/// ```
/// use herd::codec::{self, CodecError};
///
/// let frame = codec::encode(&vec![1u32, 300], 64)?;
/// assert_eq!(frame, [codec::WIRE_VERSION, 2, 1, 0xac, 0x02]);
///
/// // Refuses to build a frame over the limit.
/// assert_eq!(
///     codec::encode(&vec![0u8; 100], 64),
///     Err(CodecError::EncodeLimitExceeded { limit: 64 })
/// );
/// # Ok::<(), CodecError>(())
/// ```
pub fn encode<T: Serialize + ?Sized>(msg: &T, limit: usize) -> Result<Vec<u8>, CodecError> {
    if limit == 0 {
        // Not even the version byte fits.
        return Err(CodecError::EncodeLimitExceeded { limit });
    }
    let mut out = Bounded {
        buf: Vec::new(),
        limit,
    };
    // Cannot fail: limit >= 1 was checked above.
    out.try_push(WIRE_VERSION)
        .map_err(|e| ser_error(e, limit))?;
    postcard::serialize_with_flavor(msg, out).map_err(|e| ser_error(e, limit))
}

/// Encodes `msg` like [`encode`] into `buf`, for hot paths that only need the bytes briefly;
/// `None` when it does not fit `buf` (or cannot be encoded at all).
pub(crate) fn encode_into<'a, T: Serialize + ?Sized>(
    msg: &T,
    buf: &'a mut [u8],
) -> Option<&'a [u8]> {
    let (first, rest) = buf.split_first_mut()?;
    *first = WIRE_VERSION;
    let len = postcard::to_slice(msg, rest).ok()?.len();
    Some(&buf[..1 + len])
}

/// Decodes a frame produced by [`encode`], refusing frames longer than `limit` bytes.
///
/// Checks, in this order: the limit (before reading anything), the version byte, the payload,
/// and that nothing follows the message.
///
/// # Errors
///
/// - [`CodecError::FrameTooLarge`] if `frame.len() > limit`.
/// - [`CodecError::EmptyFrame`] if `frame` is empty.
/// - [`CodecError::UnknownVersion`] if the first byte is not [`WIRE_VERSION`].
/// - [`CodecError::Truncated`] if the payload ends before the message does.
/// - [`CodecError::Malformed`] if the payload is not a valid `T`.
/// - [`CodecError::TrailingBytes`] if bytes follow the message.
///
/// # Examples
///
/// ```
/// use herd::codec::{self, CodecError};
///
/// let frame = codec::encode(&Some(42u64), 64)?;
/// assert_eq!(codec::decode::<Option<u64>>(&frame, 64)?, Some(42));
///
/// // The limit is checked before the payload is read.
/// assert_eq!(
///     codec::decode::<Option<u64>>(&frame, 1),
///     Err(CodecError::FrameTooLarge { len: frame.len(), limit: 1 })
/// );
/// // A cut-short frame is an error, never a panic.
/// assert_eq!(codec::decode::<Option<u64>>(&frame[..2], 64), Err(CodecError::Truncated));
/// # Ok::<(), CodecError>(())
/// ```
pub fn decode<T: DeserializeOwned>(frame: &[u8], limit: usize) -> Result<T, CodecError> {
    if frame.len() > limit {
        return Err(CodecError::FrameTooLarge {
            len: frame.len(),
            limit,
        });
    }
    let Some((&version, payload)) = frame.split_first() else {
        return Err(CodecError::EmptyFrame);
    };
    if version != WIRE_VERSION {
        return Err(CodecError::UnknownVersion {
            found: version,
            supported: WIRE_VERSION,
        });
    }
    let (msg, rest) = postcard::take_from_bytes::<T>(payload).map_err(de_error)?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes { count: rest.len() });
    }
    Ok(msg)
}

/// The exact length of the frame [`encode`] would produce for `msg`, version byte included.
///
/// Counts bytes without buffering them, so the sync protocol can check a candidate message
/// against `max_sync_size` before building it.
///
/// # Errors
///
/// [`CodecError::Unencodable`] if `msg` cannot be written in this format (the same cases in
/// which [`encode`] fails with that error).
///
/// # Examples
///
/// ```
/// use herd::codec;
///
/// let msg = ("key".to_string(), u64::MAX);
/// let len = codec::encoded_len(&msg)?;
/// assert_eq!(len, codec::encode(&msg, usize::MAX)?.len());
/// assert_eq!(len, 1 + 4 + 10); // version, "key" with its length, a 10-byte varint
/// # Ok::<(), codec::CodecError>(())
/// ```
pub fn encoded_len<T: Serialize + ?Sized>(msg: &T) -> Result<usize, CodecError> {
    let payload = postcard::serialize_with_flavor(msg, Counter(0)).map_err(|e| ser_error(e, 0))?;
    // The version byte; saturating because a usize-sized message cannot exist anyway.
    Ok(payload.saturating_add(1))
}

/// Output flavor that buffers at most `limit` bytes and fails the serialization as soon as
/// one more would be written, so an oversized message is never fully materialised.
struct Bounded {
    buf: Vec<u8>,
    limit: usize,
}

impl Flavor for Bounded {
    type Output = Vec<u8>;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() > self.limit.saturating_sub(self.buf.len()) {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.buf)
    }
}

/// Output flavor that only counts bytes.
struct Counter(usize);

impl Flavor for Counter {
    type Output = usize;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0 = self.0.saturating_add(data.len());
        Ok(())
    }

    fn try_push(&mut self, _data: u8) -> postcard::Result<()> {
        self.0 = self.0.saturating_add(1);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.0)
    }
}

/// Maps a serialization error. Only [`Bounded`] reports a full buffer, so that variant means
/// "over the limit"; everything else is a value postcard cannot write.
fn ser_error(err: postcard::Error, limit: usize) -> CodecError {
    match err {
        postcard::Error::SerializeBufferFull => CodecError::EncodeLimitExceeded { limit },
        other => CodecError::Unencodable {
            reason: describe(&other),
        },
    }
}

/// Maps a deserialization error: running out of input gets its own variant because it is the
/// one a cut-short frame or a forged length prefix produces.
fn de_error(err: postcard::Error) -> CodecError {
    match err {
        postcard::Error::DeserializeUnexpectedEnd => CodecError::Truncated,
        other => CodecError::Malformed {
            reason: describe(&other),
        },
    }
}

/// A static description of a postcard error, so [`CodecError`] stays cheap and comparable
/// without exposing postcard's (non-exhaustive) error type in herd's public API.
fn describe(err: &postcard::Error) -> &'static str {
    use postcard::Error as E;
    match err {
        E::DeserializeUnexpectedEnd => "unexpected end of input",
        E::DeserializeBadVarint => "varint does not terminate or overflows its type",
        E::DeserializeBadBool => "bool byte is neither 0 nor 1",
        E::DeserializeBadChar => "invalid unicode scalar value",
        E::DeserializeBadUtf8 => "string is not valid UTF-8",
        E::DeserializeBadOption => "Option tag is neither 0 nor 1",
        E::DeserializeBadEnum => "enum discriminant out of range",
        E::DeserializeBadEncoding => "invalid encoding",
        E::DeserializeBadCrc => "bad checksum",
        // postcard drops serde's custom message; for derived types this is typically an
        // unknown enum variant index or a missing field.
        E::SerdeDeCustom => "value rejected by the type's Deserialize impl",
        E::SerdeSerCustom => "value rejected by the type's Serialize impl",
        E::SerializeSeqLengthUnknown => "sequence length must be known before encoding",
        E::CollectStrError => "Display impl failed while encoding a string",
        E::SerializeBufferFull => "output buffer full",
        E::WontImplement | E::NotYetImplemented => "serde feature not supported by postcard",
        _ => "unrecognised postcard error",
    }
}
