//! Test peer: octoprint (skeleton; filled in with issue 3).
