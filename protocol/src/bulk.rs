//! Bulk values: how several raw byte values share one frame's attachment section
//! (SPEC §6.11).
//!
//! A frame's `wc.bulk` annotation lists the length of each bulk value, in order; the
//! attachment section is their concatenation. The codec payload refers to the values by
//! their index in that list (how it does so is the codec layer's business). A frame without
//! `wc.bulk` has one bulk value when its attachment is not empty, and none otherwise.
//!
//! The lengths must add up to the attachment's length: a frame whose do not is refused as a
//! call (or fails as an answer) with [`ProtocolError::BulkMismatch`]; the connection stays
//! up, since the frame itself was well delimited by its header.

use bytes::Bytes;

use crate::annotations::Annotations;
use crate::error::ProtocolError;

/// Checks that the `wc.bulk` lengths of a frame add up to its attachment length.
pub fn check_bulk(annotations: &Annotations, attachment_len: usize) -> Result<(), ProtocolError> {
    let Some(lengths) = annotations.bulk_lengths() else {
        return Ok(());
    };
    let declared: u64 = lengths.map(u64::from).sum();
    if declared != attachment_len as u64 {
        return Err(ProtocolError::BulkMismatch {
            declared,
            attachment: attachment_len as u64,
        });
    }
    Ok(())
}

/// Whether a frame carries bulk values: it has a `wc.bulk` entry or an attachment.
pub fn has_bulk(annotations: &Annotations, attachment: &[u8]) -> bool {
    !attachment.is_empty() || annotations.get(crate::annotations::BULK_KEY).is_some()
}

/// The bulk values of a frame, as slices of its attachment (no copy), in order.
///
/// Without `wc.bulk` the attachment is one value (none when it is empty). Fails with
/// [`ProtocolError::BulkMismatch`] when the listed lengths do not add up to the
/// attachment's length. The number of values is bounded by the annotation section's
/// length (4 bytes each), which the receiver limits before allocating.
pub fn split_bulk(
    annotations: &Annotations,
    attachment: &Bytes,
) -> Result<Vec<Bytes>, ProtocolError> {
    let Some(lengths) = annotations.bulk_lengths() else {
        return Ok(if attachment.is_empty() {
            Vec::new()
        } else {
            vec![attachment.clone()]
        });
    };
    check_bulk(annotations, attachment.len())?;
    let mut parts = Vec::with_capacity(lengths.size_hint().0);
    let mut at = 0usize;
    for len in lengths {
        // In bounds: the lengths add up to the attachment's (checked above).
        let end = at + len as usize;
        parts.push(attachment.slice(at..end));
        at = end;
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::BULK_KEY;

    fn ann(lengths: &[u32]) -> Annotations {
        let built = Annotations::builder().bulk(lengths).unwrap().build();
        // What travels is read back as a receiver would.
        Annotations::from_wire(built.as_bytes().clone()).unwrap()
    }

    #[test]
    fn parts_are_slices_of_the_attachment_in_order() {
        let att = Bytes::from_static(b"abcdefgh");
        let parts = split_bulk(&ann(&[3, 0, 5]), &att).unwrap();
        assert_eq!(parts, [&b"abc"[..], b"", b"defgh"]);
        // Shared with the attachment, not copied.
        assert_eq!(parts[2].as_ptr(), att[3..].as_ptr());
    }

    #[test]
    fn no_annotation_means_one_value_or_none() {
        let none = Annotations::new();
        assert!(split_bulk(&none, &Bytes::new()).unwrap().is_empty());
        assert!(!has_bulk(&none, &[]));
        let att = Bytes::from_static(b"raw");
        assert_eq!(split_bulk(&none, &att).unwrap(), std::slice::from_ref(&att));
        assert!(has_bulk(&none, &att));
        // An empty list with an empty attachment: bulk mode, no values.
        assert!(has_bulk(&ann(&[]), &[]));
        assert!(split_bulk(&ann(&[]), &Bytes::new()).unwrap().is_empty());
    }

    #[test]
    fn lengths_that_do_not_add_up_are_a_mismatch() {
        let att = Bytes::from_static(b"abcdef");
        for lengths in [&[7u32][..], &[2, 2], &[], &[u32::MAX, u32::MAX]] {
            let e = split_bulk(&ann(lengths), &att).unwrap_err();
            let declared = lengths.iter().map(|&l| u64::from(l)).sum();
            assert_eq!(
                e,
                ProtocolError::BulkMismatch {
                    declared,
                    attachment: 6
                }
            );
            assert_eq!(e.kind_name(), "bulk_mismatch");
            assert_eq!(e.code(), crate::ErrorCode::BAD_ARGUMENTS);
            assert_eq!(check_bulk(&ann(lengths), 6), Err(e));
        }
        assert_eq!(check_bulk(&ann(&[6]), 6), Ok(()));
        assert_eq!(check_bulk(&Annotations::new(), 6), Ok(()));
    }

    #[test]
    fn a_bulk_value_not_a_multiple_of_4_is_malformed() {
        // key_len | key | value_len | value (5 bytes)
        let mut raw = vec![BULK_KEY.len() as u8];
        raw.extend_from_slice(BULK_KEY.as_bytes());
        raw.extend_from_slice(&5u32.to_be_bytes());
        raw.extend_from_slice(&[0, 0, 0, 1, 0]);
        let e = Annotations::from_wire(Bytes::from(raw)).unwrap_err();
        assert_eq!(e.kind_name(), "malformed_body");
        assert!(e.to_string().contains("wc.bulk"), "{e}");
    }

    #[test]
    fn with_bulk_keeps_the_other_entries() {
        let base = Annotations::builder()
            .deadline(std::time::Duration::from_millis(5))
            .insert("k", b"v")
            .unwrap()
            .build();
        let a = base.with_bulk(&[1, 2]).unwrap();
        assert_eq!(a.deadline(), base.deadline());
        assert_eq!(a.user().collect::<Vec<_>>(), [("k", &b"v"[..])]);
        assert_eq!(a.bulk_lengths().unwrap().collect::<Vec<_>>(), [1, 2]);
        assert!(Annotations::from_wire(a.as_bytes().clone()).is_ok());
        // Users cannot forge it.
        assert!(Annotations::builder().insert(BULK_KEY, b"").is_err());
    }
}
