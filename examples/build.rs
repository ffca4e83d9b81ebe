//! With the `protobuf` feature: compiles examples/proto/greeter.proto with
//! protox (pure Rust, no protoc), and generates its messages (with serde
//! too, so the same types travel as JSON) and a tonic client and server
//! (the gRPC benchmark's peer) with tonic-prost-build. The descriptor set
//! goes to `$OUT_DIR/greeter.bin`, for gRPC server reflection.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(feature = "protobuf")]
    greeter();
}

#[cfg(feature = "protobuf")]
fn greeter() {
    println!("cargo::rerun-if-changed=proto/greeter.proto");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let set = protox::compile(["proto/greeter.proto"], ["proto"])
        .expect("examples/proto/greeter.proto compiles");
    std::fs::write(out.join("greeter.bin"), prost::Message::encode_to_vec(&set))
        .expect("writing the descriptor set");
    tonic_prost_build::configure()
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .type_attribute(".", "#[serde(default)]")
        .compile_fds(set)
        .expect("generating the greeter's code");
}
