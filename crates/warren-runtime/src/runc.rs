//! runc (being written)
