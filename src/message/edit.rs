//! The header edit plan applied to the held input: new fields at the top, named fields removed
//! with their continuation lines, and every other byte passed on as a `Bytes` slice of the
//! piece it came in, in order.

use std::collections::VecDeque;

use bytes::Bytes;

use super::mime::FieldSpan;
use super::EditPlan;

/// A field's name and raw value within the copied header block (see
/// [`super::Pipeline::header_fields`]).
pub(crate) fn field_parts<'h>(header: &'h [u8], f: &FieldSpan) -> Option<(&'h [u8], &'h [u8])> {
    let field = header.get(f.start..f.end)?;
    let name = field.get(..f.name_len)?;
    let mut end = field.len();
    if field.get(end.wrapping_sub(1)) == Some(&b'\n') {
        end -= 1;
        if end > f.colon + 1 && field.get(end - 1) == Some(&b'\r') {
            end -= 1;
        }
    }
    let mut start = f.colon + 1;
    while start < end && matches!(field[start], b' ' | b'\t') {
        start += 1;
    }
    Some((name, field.get(start..end.max(start))?))
}

/// Queues the output for the held pieces: `plan.prepend`, then the pieces without the byte
/// ranges of the fields `plan.remove` names.
pub(crate) fn apply(
    plan: &EditPlan,
    fields: &[FieldSpan],
    header: &[u8],
    held: Vec<Bytes>,
    out: &mut VecDeque<Bytes>,
) {
    if !plan.prepend.is_empty() {
        out.push_back(Bytes::copy_from_slice(&plan.prepend));
    }
    // Empty (no allocation) unless a field is removed.
    let cuts: Vec<(usize, usize)> = if plan.remove.is_empty() {
        Vec::new()
    } else {
        fields
            .iter()
            .filter(|f| {
                header
                    .get(f.start..f.end)
                    .and_then(|field| field.get(..f.name_len))
                    .is_some_and(|name| {
                        plan.remove
                            .iter()
                            .any(|r| r.as_bytes().eq_ignore_ascii_case(name))
                    })
            })
            .map(|f| (f.start, f.end))
            .collect()
    };
    let mut offset = 0;
    let mut next_cut = 0;
    for piece in held {
        let (piece_start, piece_end) = (offset, offset + piece.len());
        offset = piece_end;
        let mut at = piece_start;
        while at < piece_end {
            while next_cut < cuts.len() && cuts[next_cut].1 <= at {
                next_cut += 1;
            }
            match cuts.get(next_cut) {
                Some(&(cut_start, cut_end)) if cut_start < piece_end => {
                    if cut_start > at {
                        out.push_back(piece.slice(at - piece_start..cut_start - piece_start));
                    }
                    at = cut_end.min(piece_end).max(at);
                }
                _ => {
                    if at == piece_start {
                        out.push_back(piece.clone());
                    } else {
                        out.push_back(piece.slice(at - piece_start..));
                    }
                    at = piece_end;
                }
            }
        }
    }
}
