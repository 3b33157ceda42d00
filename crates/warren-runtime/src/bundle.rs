//! bundle (being written)
