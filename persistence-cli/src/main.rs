//! The `persistence` command.
fn main() {}
