//! Generates the gRPC code for both worlds (real tonic and the madsim
//! simulator) from `proto/shoal.proto`, using the vendored `protoc` so that a
//! fresh machine needs nothing installed by hand.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/shoal.proto");
    tonic_build::configure()
        .bytes(["."])
        .btree_map(["."])
        .compile_protos(&["proto/shoal.proto"], &["proto"])?;
    Ok(())
}
