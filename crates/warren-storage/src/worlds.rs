//! worlds (being written)
