//! btrfs (being written)
