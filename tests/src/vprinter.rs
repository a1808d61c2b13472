//! Test peer: vprinter (skeleton; filled in with issue 3).
