//! What the spool holds for delivery: one finding or one run update per record.
//!
//! Record layout: one tag byte (`1` finding, `2` run update) then the prost encoding. The tag
//! keeps the spool format independent of protobuf schema evolution: new fields are fine,
//! and a future item kind gets a new tag.

use patchwatch_proto::{Finding, RunUpdate};
use prost::Message;

const TAG_FINDING: u8 = 1;
const TAG_RUN_UPDATE: u8 = 2;

/// One deliverable item, as stored in the spool.
#[derive(Debug, Clone, PartialEq)]
pub enum SpoolItem {
    /// A finding (boxed, like the run update: both are hundreds of bytes).
    Finding(Box<Finding>),
    /// A run state change.
    RunUpdate(Box<RunUpdate>),
}

/// A spool record that is not a valid [`SpoolItem`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ItemError {
    /// Unknown or missing tag byte.
    #[error("unknown spool item tag {0:?}")]
    Tag(Option<u8>),
    /// The protobuf bytes do not decode.
    #[error("spool item does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
}

impl SpoolItem {
    /// Encodes for [`Spool::append`](crate::spool::Spool::append).
    pub fn encode(&self) -> Vec<u8> {
        let (tag, len) = match self {
            Self::Finding(f) => (TAG_FINDING, f.encoded_len()),
            Self::RunUpdate(r) => (TAG_RUN_UPDATE, r.encoded_len()),
        };
        let mut buf = Vec::with_capacity(1 + len);
        buf.push(tag);
        match self {
            Self::Finding(f) => f.encode(&mut buf),
            Self::RunUpdate(r) => r.encode(&mut buf),
        }
        .expect("a Vec grows as needed");
        buf
    }

    /// Decodes a spool record.
    ///
    /// # Errors
    /// [`ItemError`] for an unknown tag or bad protobuf.
    pub fn decode(bytes: &[u8]) -> Result<Self, ItemError> {
        match bytes.split_first() {
            Some((&TAG_FINDING, rest)) => Ok(Self::Finding(Box::new(Finding::decode(rest)?))),
            Some((&TAG_RUN_UPDATE, rest)) => {
                Ok(Self::RunUpdate(Box::new(RunUpdate::decode(rest)?)))
            }
            other => Err(ItemError::Tag(other.map(|(t, _)| *t))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_bad_tag() {
        let f = SpoolItem::Finding(Box::new(Finding {
            id: "x".into(),
            ..Default::default()
        }));
        assert_eq!(SpoolItem::decode(&f.encode()).unwrap(), f);
        let r = SpoolItem::RunUpdate(Box::new(RunUpdate {
            run_id: "r".into(),
            ..Default::default()
        }));
        assert_eq!(SpoolItem::decode(&r.encode()).unwrap(), r);
        assert!(matches!(
            SpoolItem::decode(&[9, 1]),
            Err(ItemError::Tag(Some(9)))
        ));
        assert!(matches!(SpoolItem::decode(&[]), Err(ItemError::Tag(None))));
    }
}
