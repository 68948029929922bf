//! Feature availability by kernel release.
