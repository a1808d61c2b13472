//! Test peer: moonraker (skeleton; filled in with issue 3).
