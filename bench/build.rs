//! Generates the etcd v3 client code `shoal-bench` drives etcd with, using the
//! vendored `protoc` as the node's own build does.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/etcd.proto");
    tonic_build::configure()
        .bytes(["."])
        .build_server(false)
        .compile_protos(&["proto/etcd.proto"], &["proto"])?;
    Ok(())
}
