//! The `notation` fuzz target's logic, shared with
//! `conformance/tests/fuzz_regressions.rs` (stable).
//!
//! Invariants checked on any input, beyond "no panic":
//! - the parser either returns a value or an error whose line and column point inside the
//!   text (1-based; the column may point one past the end of a line);
//! - printing is canonical: `parse(print(v))` succeeds, gives a value the same as `v`
//!   (`notation::same`), and prints to the same text again.

use wirecall_conformance::notation;

pub(crate) fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match notation::parse(text) {
        Ok(v) => {
            let printed = notation::print(&v);
            let back = match notation::parse(&printed) {
                Ok(b) => b,
                Err(e) => panic!("printed notation does not parse: {e}\n  text {printed}"),
            };
            assert!(
                notation::same(&v, &back),
                "print/parse changed the value\n  before {v:?}\n  after  {back:?}"
            );
            assert_eq!(notation::print(&back), printed, "printing is not canonical");
        }
        Err(e) => {
            let lines = text.split('\n').count();
            assert!(
                e.line >= 1 && e.line <= lines,
                "error line {} outside the text ({lines} lines): {e}",
                e.line
            );
            let line = text.split('\n').nth(e.line - 1).unwrap_or("");
            assert!(
                e.column >= 1 && e.column <= line.chars().count() + 1,
                "error column {} outside line {} ({} chars): {e}",
                e.column,
                e.line,
                line.chars().count()
            );
        }
    }
}
