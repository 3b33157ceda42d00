//! The guest agent's side of warren-vm: the wire protocol the host and the agent inside a
//! microVM speak ([`proto`]). The agent itself is the `warren-agent` binary; the host side is
//! the VM shim.

pub mod proto;

pub use proto::{
    read_frame, read_message, write_frame, write_message, CopySpec, Decoder, ExecSpec, Frame, Kind,
    Message, Mount, NetConfig, ProtoError, StartSpec, MAIN_CHANNEL, MAX_PAYLOAD, VERSION,
};
