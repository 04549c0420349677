//! The bincode codec on what a peer can send: every Raft RPC body the admin port
//! decodes (after the cluster secret), and a snapshot a leader installs. Garbage
//! must be an error, never a panic or an allocation beyond the message limit; what
//! decodes must encode again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use sluice_raft::codec::{decode, encode};
use sluice_raft::{Command, MembershipChange, TypeConfig};

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(data: &[u8]) {
    if let Ok(v) = decode::<T>(data) {
        let bytes = encode(&v).expect("what decoded encodes");
        decode::<T>(&bytes).expect("what encoded decodes");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => round_trip::<Command>(body),
        1 => round_trip::<AppendEntriesRequest<TypeConfig>>(body),
        2 => round_trip::<VoteRequest<u64>>(body),
        3 => round_trip::<InstallSnapshotRequest<TypeConfig>>(body),
        4 => round_trip::<MembershipChange>(body),
        _ => {
            let _ = sluice_raft::state::decode_snapshot(body);
        }
    }
});
