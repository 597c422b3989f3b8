//! AwLwwMap against HashMap (filled in next).
fn main() {}
