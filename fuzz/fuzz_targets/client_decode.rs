//! A client's reply decoding, on arbitrary bodies.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rpc_tests::fuzzing::client_decode(data));
