//! Container lifecycle (runtime owner fills this in).
