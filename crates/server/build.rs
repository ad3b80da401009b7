//! Compiles the gRPC API with the vendored protoc, so no system package is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/meridian.proto");
    tonic_build::configure().compile_protos(&["proto/meridian.proto"], &["proto"])?;
    Ok(())
}
