//! Fuzz targets on stable Rust (proptest): everything that decodes bytes or text a peer or a
//! client controls must answer with a value or an error, never panic, and never allocate
//! beyond what the input's size allows. Targets: the peer transport's frame decoder, the log
//! entry codec, the HTTP API's decoders (keyspace policies, token requests, path segments,
//! session and context tokens, request ids, bearer tokens and grants) and the gRPC request
//! decoders (protobuf, then the same token parsers).
//!
//! CI runs the default 256 cases per target inside `cargo test`. The long run (documented in
//! README.md): `PROPTEST_CASES=200000 cargo test --release -p meridian-server --test fuzz`.
//! A failure is shrunk and saved under `proptest-regressions/` next to this file; commit it, so
//! the case stays a regression test.

use meridian_consensus::log_store::{decode, encode};
use meridian_consensus::typ::Entry;
use meridian_consensus::TypeConfig;
use meridian_server::grpc::pb;
use meridian_server::transport::fuzz::{decode_frame, samples};
use meridian_types::wire::Command;
use meridian_types::KeyspacePolicy;
use openraft::entry::RaftEntry;
use proptest::prelude::*;
use prost::Message;

fn entry(index: u64, cmd: Command) -> Entry {
    Entry::new_normal(openraft::testing::log_id::<TypeConfig>(3, 1, index), cmd)
}

/// Bytes with one of a few mutations applied: a byte flipped, a byte inserted, the tail cut,
/// the length prefix replaced.
fn mutate(mut bytes: Vec<u8>, at: usize, byte: u8, how: u8) -> Vec<u8> {
    if bytes.is_empty() {
        return vec![byte];
    }
    let at = at % bytes.len();
    match how % 4 {
        0 => bytes[at] ^= byte.max(1),
        1 => bytes.insert(at, byte),
        2 => bytes.truncate(at),
        _ => {
            let len = u32::from_be_bytes([byte, bytes[at], byte, bytes[0]]);
            if bytes.len() >= 4 {
                bytes[..4].copy_from_slice(&len.to_be_bytes());
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256)
    ))]

    // Transport frames: arbitrary bytes, and mutations of every kind of well-formed frame.
    #[test]
    fn frame_decoder_arbitrary(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decode_frame(&bytes);
    }

    #[test]
    fn frame_decoder_mutated(which in 0usize..6, at in any::<usize>(), byte in any::<u8>(), how in any::<u8>()) {
        let all = samples();
        let s = all[which % all.len()].clone();
        let _ = decode_frame(&mutate(s, at, byte, how));
    }

    // Log entries as stored: arbitrary bytes, mutations, and round trips of any put.
    #[test]
    fn log_codec_arbitrary(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode::<Entry>(&bytes);
        let _ = decode::<Command>(&bytes);
    }

    #[test]
    fn log_codec_round_trip_and_mutations(
        key in proptest::collection::vec(any::<u8>(), 0..64),
        value in proptest::collection::vec(any::<u8>(), 0..512),
        index in any::<u64>(),
        at in any::<usize>(), byte in any::<u8>(), how in any::<u8>(),
    ) {
        let e = entry(index, Command::Put { key: key.clone(), value: value.clone() });
        let bytes = encode(&e);
        let back: Entry = decode(&bytes).expect("an encoded entry decodes");
        prop_assert_eq!(encode(&back), bytes.clone());
        let _ = decode::<Entry>(&mutate(bytes, at, byte, how));
        let cas = entry(index, Command::Cas { key, expected: Some(value), value: None });
        let _ = decode::<Entry>(&mutate(encode(&cas), at, byte, how));
    }

    // The HTTP API's decoders.
    #[test]
    fn keyspace_policy_json(text in "\\PC{0,300}") {
        if let Ok(p) = serde_json::from_str::<KeyspacePolicy>(&text) {
            let regions = ["us-east-1", "us-west-2", "eu-west-1"].iter().map(|r| r.to_string()).collect();
            let _ = p.validate(&regions);
        }
    }

    #[test]
    fn keyspace_policy_mutated(at in any::<usize>(), ch in any::<char>(), cut in any::<bool>()) {
        let base = r#"{"name":"orders","replication":"sync","survive":"region","home_region":"us-east-1","regions":["us-east-1","us-west-2","eu-west-1"],"shards":4,"witness_region":"eu-west-1","promotion":"manual"}"#;
        let mut chars: Vec<char> = base.chars().collect();
        let at = at % chars.len();
        if cut { chars.truncate(at) } else { chars[at] = ch }
        let text: String = chars.into_iter().collect();
        if let Ok(p) = serde_json::from_str::<KeyspacePolicy>(&text) {
            let regions = ["us-east-1", "us-west-2", "eu-west-1"].iter().map(|r| r.to_string()).collect();
            let _ = p.validate(&regions);
        }
    }

    #[test]
    fn tokens_and_headers(text in "\\PC{0,200}", bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = meridian_georep::SessionToken::parse(&text);
        let _ = meridian_crdt::row::parse_context_token(&text);
        let _ = meridian_control::auth::Token::parse(&text);
        let _ = meridian_control::auth::Grant::parse(&text);
        let _ = meridian_control::auth::pattern_matches(&text, "orders-eu");
        let _ = meridian_control::auth::pattern_matches("a*b*c", &text);
        let _ = meridian_server::http_auth::decode(&text);
        let _ = meridian_server::api::check_request_id(&bytes);
        let _ = serde_json::from_str::<meridian_server::auth::CreateToken>(&text);
    }

    #[test]
    fn session_token_round_trip_mutated(at in any::<usize>(), ch in any::<char>()) {
        let t = meridian_georep::SessionToken::default().encode();
        let mut chars: Vec<char> = t.chars().collect();
        if !chars.is_empty() {
            let at = at % chars.len();
            chars[at] = ch;
        }
        let _ = meridian_georep::SessionToken::parse(&chars.into_iter().collect::<String>());
    }

    // The gRPC API's decoders: protobuf from arbitrary bytes, then what the handlers parse.
    #[test]
    fn grpc_requests(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        if let Ok(r) = pb::PutRequest::decode(bytes.as_slice()) {
            let _ = meridian_georep::SessionToken::parse(&r.session);
            let _ = meridian_crdt::row::parse_context_token(&r.context);
            let _ = meridian_server::api::check_request_id(&r.request_id);
        }
        if let Ok(r) = pb::GetRequest::decode(bytes.as_slice()) {
            let _ = meridian_georep::SessionToken::parse(&r.session);
        }
        let _ = pb::DeleteRequest::decode(bytes.as_slice());
        let _ = pb::ScanRequest::decode(bytes.as_slice());
        let _ = pb::CompareAndSwapRequest::decode(bytes.as_slice());
        let _ = pb::IncrRequest::decode(bytes.as_slice());
        let _ = pb::UpdateSetRequest::decode(bytes.as_slice());
        let _ = pb::ConflictsRequest::decode(bytes.as_slice());
        let _ = pb::OperatorRequest::decode(bytes.as_slice());
        let _ = pb::SwitchoverRequest::decode(bytes.as_slice());
    }
}

// Goal: the samples the mutations start from are themselves well-formed (so the mutated
// targets exercise the decoder past its first byte), and a frame cut anywhere is refused.
#[test]
fn samples_decode_and_truncations_fail() {
    for (i, s) in samples().iter().enumerate() {
        let (id, _) = decode_frame(s).expect("a sample decodes");
        assert_eq!(id, i as u64);
        for cut in 0..s.len() {
            assert!(
                decode_frame(&s[..cut]).is_err(),
                "cut at {cut} of sample {i}"
            );
        }
    }
}
