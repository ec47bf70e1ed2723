//! A server's request decoding and dispatch, on arbitrary bodies.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rpc_tests::fuzzing::server_dispatch(data));
