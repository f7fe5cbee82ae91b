//! Whether a forwarder's acknowledged cursor has reached a point of the file family (a flush's
//! target, a damaged file's place): shared by the forwarders that answer flushes that way.

use crate::dir::follow::Cursor;

/// Whether the acknowledged cursor `acked` is at or past `end` in the file family.
pub(crate) fn reached(acked: Cursor, end: Cursor) -> bool {
    match (acked.after, end.after) {
        (a, e) if a == e => acked.offset >= end.offset,
        (Some(a), Some(e)) => a > e,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        (None, None) => unreachable!("equal, matched above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_target_is_reached_in_its_file_or_past_it_and_not_before() {
        let at = |after: Option<i64>, offset| Cursor {
            after: after.map(crate::dir::backup::Stamp),
            offset,
            fingerprint: None,
        };
        assert!(reached(at(Some(5), 100), at(Some(5), 100)));
        assert!(!reached(at(Some(5), 99), at(Some(5), 100)));
        // The target was in the current file, which has since become backup 7 and been read past.
        assert!(reached(at(Some(7), 0), at(Some(5), 100)));
        assert!(reached(at(Some(1), 0), at(None, 100)));
        assert!(!reached(at(None, 100), at(Some(1), 0)));
    }
}
