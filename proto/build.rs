//! Compiles the peer protocol with protox (no protoc needed) and generates tonic/prost code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let descriptors = protox::compile(["proto/peer.proto"], ["proto"])?;
    tonic_prost_build::configure().bytes(".").compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=proto/peer.proto");
    Ok(())
}
